"""Recipes (condensekit.recipes): reading and checking TOML files, layering them under the
command line, sweeps, and the recipe of a stored set written back as TOML."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from condensekit.errors import RegistryError, UsageError
from condensekit.methods.dm import DistributionMatching
from condensekit.recipes import dump_recipe, expand, load_recipe, recipe_from_set, stored_recipe
from condensekit.registry import Registry
from condensekit.synthetic import SyntheticSet

DM = DistributionMatching


def _write(tmp_path: Path, text: str, name: str = "recipe.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _stored_info(**changes: object) -> dict:
    """What Registry.show returns for a distilled set (only the keys a recipe reads)."""
    meta = {
        "method": "dm",
        "method_version": "1.0.0",
        "condensekit_version": "0.1.0",
        "dataset": "cifar10-mini",
        "resolution": 32,
        "ipc": 1,
        "seed": 3,
        "iterations": 2,
        "backbone": "convnet",
        "device": "cuda:1",
        "world_size": 1,
        "compiled": False,
        "stored_dtype": "float16",
        "config": {"lr_img": 0.5, "momentum": 0.5, "batch_real": 8, "init": "real", "autocast": False},
        **changes,
    }
    return {"ref": "mine:v2", "name": "mine", "metadata": meta}


def test_config_keys_are_read_from_the_top_level_and_the_config_table(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, 'data = "cifar10-mini"\nipc = 2\nlr_img = 0.5\n[config]\nbatch-real = 8\n'))
    (run,) = expand(DM, recipe)
    assert run.request.config == {"lr_img": 0.5, "batch_real": 8}
    assert (run.request.data, run.request.ipc) == ("cifar10-mini", 2)


def test_unknown_key_names_the_key_and_the_valid_ones(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, 'data = "cifar10-mini"\nipc = 1\nlr = 3\n'))
    with pytest.raises(UsageError, match=r"unknown key 'lr' in .*recipe.toml; valid keys: method, data, ipc") as exc:
        expand(DM, recipe)
    assert "lr-img" in str(exc.value) and "\n" not in str(exc.value)


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="key 'lr-img' is given twice"):
        load_recipe(_write(tmp_path, "lr-img = 1.0\n[config]\nlr_img = 2.0\n"))


def test_a_common_option_in_the_config_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="'ipc' is a common option, not a config key"):
        load_recipe(_write(tmp_path, "[config]\nipc = 1\n"))


def test_a_value_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"ipc = '10' in .* must be an integer"):
        load_recipe(_write(tmp_path, 'ipc = "10"\n'))
    recipe = load_recipe(_write(tmp_path, 'data = "cifar10-mini"\nipc = 1\nbatch-real = 0.5\n'))
    with pytest.raises(UsageError, match=r"batch-real = 0\.5 .* must be an integer"):
        expand(DM, recipe)


def test_invalid_toml_is_one_line_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"is not valid TOML: .*line 1.*; fix the file"):
        load_recipe(_write(tmp_path, "ipc =\n"))


def test_missing_recipe_file_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found; check the path"):
        load_recipe(tmp_path / "nope.toml")


def test_command_line_overrides_the_recipe_which_overrides_the_environment(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, 'data = "cifar10-mini"\nipc = 1\nseed = 4\ndata-root = "/from/file"\n'))
    (run,) = expand(
        DM, recipe, flags={"seed": 7, "lr_img": 2.0}, ambient={"data_root": "/from/env", "registry": "/env/reg"}
    )
    assert run.request.seed == 7 and run.request.config == {"lr_img": 2.0}
    assert run.request.data_root == "/from/file" and run.request.registry == "/env/reg"


def test_recipe_for_another_method_is_refused(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, 'method = "random"\ndata = "cifar10-mini"\nipc = 1\n'))
    with pytest.raises(UsageError, match="is a 'random' recipe, not 'dm'"):
        expand(DM, recipe)


def test_no_data_is_usage_error_naming_both_ways_to_give_it() -> None:
    with pytest.raises(UsageError, match=r"no data given: pass --data or put data = .* in a recipe"):
        expand(DM, None, flags={"ipc": 1})


def test_sweep_is_the_cartesian_product_first_key_slowest(tmp_path: Path) -> None:
    recipe = load_recipe(
        _write(tmp_path, 'data = "cifar10-mini"\nipc = 1\n[sweep]\nseed = [0, 1]\nlr-img = [0.5, 1]\n')
    )
    runs = expand(DM, recipe)
    assert [(r.request.seed, r.request.config["lr_img"]) for r in runs] == [(0, 0.5), (0, 1.0), (1, 0.5), (1, 1.0)]
    assert runs[1].label() == "seed=0 lr-img=1.0"


def test_sweep_names_append_the_swept_values_to_the_base_name() -> None:
    named = expand(DM, None, flags={"data": "cifar10-mini", "name": "mine"}, sets=["ipc=1,2", "seed=3"])
    assert [r.request.name for r in named] == ["mine-ipc1-seed3", "mine-ipc2-seed3"]
    # The default name <method>-<dataset>-ipc<k> already tells ipc apart.
    default = expand(DM, None, flags={"data": "cifar10-mini"}, sets=["ipc=1,2", "init=real,noise"])
    assert [r.request.name for r in default] == [
        "dm-cifar10-mini-ipc1-initreal",
        "dm-cifar10-mini-ipc1-initnoise",
        "dm-cifar10-mini-ipc2-initreal",
        "dm-cifar10-mini-ipc2-initnoise",
    ]


def test_set_values_are_typed_like_their_field() -> None:
    runs = expand(DM, None, flags={"data": "cifar10-mini", "ipc": 1}, sets=["autocast=true,false", "lr_img=1"])
    assert [(r.request.config["autocast"], r.request.config["lr_img"]) for r in runs] == [(True, 1.0), (False, 1.0)]
    with pytest.raises(UsageError, match="--set seed: 'x' is not an integer"):
        expand(DM, None, flags={"data": "cifar10-mini", "ipc": 1}, sets=["seed=0,x"])
    with pytest.raises(UsageError, match="is not KEY=VALUE"):
        expand(DM, None, flags={"data": "cifar10-mini", "ipc": 1}, sets=["seed"])


def test_a_flag_replaces_the_recipe_sweep_of_its_key_and_set_replaces_the_table(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, 'data = "cifar10-mini"\nipc = 1\n[sweep]\nseed = [0, 1, 2]\n'))
    assert [r.request.seed for r in expand(DM, recipe, flags={"seed": 9})] == [9]
    assert [r.request.seed for r in expand(DM, recipe, sets=["seed=5,6"])] == [5, 6]


def test_set_of_a_key_also_given_as_a_flag_is_refused() -> None:
    with pytest.raises(UsageError, match=r"--seed and --set seed=\.\.\. are both given"):
        expand(DM, None, flags={"data": "cifar10-mini", "ipc": 1, "seed": 1}, sets=["seed=0,1"])


def test_method_and_name_cannot_be_swept(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="'method' cannot be swept"):
        load_recipe(_write(tmp_path, '[sweep]\nmethod = ["dm", "random"]\n'))
    with pytest.raises(UsageError, match="'name' cannot be swept"):
        expand(DM, None, flags={"data": "cifar10-mini", "ipc": 1}, sets=["name=a,b"])


def test_stored_set_recipe_keeps_what_remakes_it() -> None:
    recipe = recipe_from_set(_stored_info())
    assert recipe.method == "dm" and recipe.source == "set mine:v2"
    assert dict(recipe.options) == {
        "data": "cifar10-mini",
        "ipc": 1,
        "res": 32,
        "backbone": "convnet",
        "iterations": 2,
        "seed": 3,
        "device": "cuda",  # the type, not the index of one machine's GPU
        "dtype": "float16",
        "name": "mine",
    }
    assert recipe.config["lr-img"] == 0.5 and recipe.config["batch-real"] == 8


def test_dumped_recipe_reads_back_to_the_same_requests(tmp_path: Path) -> None:
    recipe = recipe_from_set(_stored_info(preset=None, experts=None, world_size=2, compiled=True))
    path = _write(tmp_path, dump_recipe(recipe))
    assert path.read_text().startswith("# condensekit recipe of mine:v2")
    assert expand(DM, load_recipe(path)) == expand(DM, recipe)
    (run,) = expand(DM, recipe)
    assert (run.request.nproc, run.request.compile, run.request.dtype) == (2, True, "float16")


def test_set_without_provenance_has_no_recipe(registry_root: Path) -> None:
    meta = {"method": "dm", "dataset": "cifar10-mini", "ipc": 1, "mean": [0.5] * 3, "std": [0.25] * 3}
    synset = SyntheticSet(images=torch.zeros(10, 3, 32, 32), labels=torch.arange(10), metadata=meta)
    Registry(registry_root).save(synset, name="imported")
    with pytest.raises(RegistryError, match="imported:v1 keeps no recipe: its metadata has no 'seed'"):
        stored_recipe("imported", registry_root)
