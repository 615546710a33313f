"""The method conformance suite (pytest), run over every installed method.

Like timm's ``tests/test_models.py`` runs every registered model, condensekit's own test
suite parametrizes this class over every discovered method; plugin authors subclass it.
Each test checks one part of the contract on a tiny real dataset, a few iterations, CPU.
A method that distills with a teacher (``needs_teacher``) gets one trained for
``teacher_epochs`` epochs on the dataset (its ``teacher_backbone``), stored in the kit's
registry and named with ``--teacher`` as a user would; soft labels, where a method returns
them, are checked as probabilities and for an exact registry round trip.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from condensekit.distill import DistillResult, distill

#: Teachers trained for the kit, by (dataset, backbone, epochs): every conformance class of a
#: session (the core suite's and each plugin's) reuses them instead of training its own.
_TEACHERS: dict[tuple[str, str | None, int], Any] = {}


class MethodConformance:
    """Subclass and set ``method`` (the entry-point name); override the budget if needed."""

    method: str = ""
    dataset: str = "cifar10-mini"
    ipc: int = 2
    iterations: int = 2
    config: dict[str, Any] | None = None  # None: the method's smoke_config
    teacher_epochs: int = 1  # training of the teacher a needs_teacher method gets
    #: The registry name of that teacher.
    TEACHER_NAME = "conformance-teacher"

    @pytest.fixture(scope="class")
    @classmethod
    def method_name(cls) -> str:
        if not cls.method:
            pytest.fail("set `method` on the conformance test class")
        return cls.method

    @classmethod
    def _config(cls, method_name: str) -> dict[str, Any]:
        if cls.config is not None:
            return dict(cls.config)
        from condensekit.plugins import load_method

        method_cls, _ = load_method(method_name)
        return dict(method_cls.smoke_config)

    @classmethod
    def _run(cls, method_name: str, registry: Any = None, seed: int = 0) -> DistillResult:
        return distill(
            method_name,
            cls.dataset,
            cls.ipc,
            iterations=cls.iterations,
            seed=seed,
            device="cpu",
            config=cls._config(method_name),
            registry=registry,
            teacher=cls._teacher(method_name, registry),
        )

    @classmethod
    def _teacher(cls, method_name: str, registry: Any) -> str | None:
        """The ``--teacher`` of a method that needs one: experts trained once into ``registry``."""
        from condensekit.experts import train_for_dataset
        from condensekit.plugins import load_method

        method_cls, _ = load_method(method_name)
        if not method_cls.needs_teacher:
            return None
        if not any(row["name"] == cls.TEACHER_NAME for row in registry.list_experts()):
            recipe = (cls.dataset, method_cls.teacher_backbone, cls.teacher_epochs)
            if recipe not in _TEACHERS:  # trained once per test session, whichever method asks
                _TEACHERS[recipe] = train_for_dataset(
                    cls.dataset, backbone=method_cls.teacher_backbone, num=1, epochs=cls.teacher_epochs, device="cpu"
                )
            registry.save_experts(_TEACHERS[recipe], name=cls.TEACHER_NAME)
        return f"{cls.TEACHER_NAME}:latest"

    @pytest.fixture(scope="class")
    @classmethod
    def registry(cls, method_name: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
        from condensekit.registry import Registry

        return Registry(tmp_path_factory.mktemp(f"registry-{method_name}"))

    @pytest.fixture(scope="class")
    @classmethod
    def result(cls, method_name: str, registry: Any) -> DistillResult:
        return cls._run(method_name, registry=registry)

    def test_images_have_dataset_shape(self, result: DistillResult) -> None:
        from condensekit.data import dataset_info

        info = dataset_info(self.dataset)
        assert tuple(result.synset.images.shape) == (
            info.num_classes * self.ipc,
            info.channels,
            info.resolution,
            info.resolution,
        )
        assert result.synset.images.dtype == torch.float32
        assert torch.isfinite(result.synset.images).all()

    def test_labels_are_class_major(self, result: DistillResult) -> None:
        from condensekit.data import dataset_info

        info = dataset_info(self.dataset)
        expected = torch.arange(info.num_classes).repeat_interleave(self.ipc)
        assert torch.equal(result.synset.labels, expected)

    def test_metadata_names_plugin_and_config(self, result: DistillResult, method_name: str) -> None:
        meta = result.synset.metadata
        assert meta["method"] == method_name
        assert meta["method_version"] and meta["distribution"] and meta["distribution_version"]
        assert meta["dataset"] == self.dataset and meta["ipc"] == self.ipc
        assert isinstance(meta["config"], dict)
        assert meta["iterations"] == self.iterations
        assert len(meta["mean"]) == len(meta["std"]) == result.synset.images.shape[1]

    def test_registry_round_trip_is_exact(self, result: DistillResult, registry: Any) -> None:
        assert result.version is not None, "the conformance run records its set in the registry"
        loaded = registry.load(result.version.ref)
        assert torch.equal(loaded.images, result.synset.images)
        assert torch.equal(loaded.labels, result.synset.labels)
        assert loaded.pixel_space == result.synset.pixel_space
        assert loaded.factor == result.synset.factor
        assert loaded.metadata["method"] == result.synset.metadata["method"]

    def test_soft_labels_are_probabilities(self, result: DistillResult) -> None:
        soft = result.synset.soft_labels
        if soft is None:
            pytest.skip("the method returns hard labels only")
        from condensekit.data import dataset_info

        assert tuple(soft.shape) == (len(result.synset), dataset_info(self.dataset).num_classes)
        assert soft.dtype == torch.float32
        assert bool((soft >= 0).all())
        assert torch.allclose(soft.sum(dim=1), torch.ones(len(soft)), atol=1e-5)

    def test_soft_labels_round_trip_bit_for_bit(self, result: DistillResult, registry: Any) -> None:
        if result.synset.soft_labels is None:
            pytest.skip("the method returns hard labels only")
        assert result.version is not None
        loaded = registry.load(result.version.ref)
        assert loaded.soft_labels is not None
        assert torch.equal(loaded.soft_labels, result.synset.soft_labels)

    def test_teacher_is_recorded(self, result: DistillResult, method_name: str) -> None:
        from condensekit.plugins import load_method

        if not load_method(method_name)[0].needs_teacher:
            pytest.skip("the method distills without a teacher")
        recorded = result.synset.metadata["teacher"]
        assert recorded["spec"].startswith(self.TEACHER_NAME + ":v")
        assert recorded["identity"]

    def test_same_seed_gives_same_set(self, result: DistillResult, method_name: str, registry: Any) -> None:
        again = self._run(method_name, registry=registry)
        assert torch.equal(again.synset.images, result.synset.images)

    def test_decoded_set_trains_as_dataset(self, result: DistillResult) -> None:
        dataset = result.synset.as_dataset()
        image, label = dataset[0]
        assert image.dim() == 3 and int(label) == 0
        assert len(dataset) == len(result.synset) * result.synset.factor**2
