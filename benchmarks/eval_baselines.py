"""The baselines every comparison needs: `random` and `dm` on CIFAR-10 IPC 10 at a reduced,
stated budget, evaluated with the same protocol (see benchmarks/fidelity.py for options).

    python benchmarks/eval_baselines.py [--iterations 200] [--epochs 300] [--runs 3]
"""

import sys

from fidelity import main

if __name__ == "__main__":
    sys.argv[1:1] = ["--methods", "random,dm", "--data", "cifar10", "--ipc", "10"]
    main()
