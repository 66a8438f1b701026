"""Data sources: the base class a registered source extends, and how ``--data`` and
``--dataset`` choose one.

Why a registry: a new layout (NIfTI volumes, a hospital's export) is one new module that
registers a :class:`DatasetSource`; the core names no layout. A source owns its layout rules as
typed settings (``--set SECTION.KEY=VALUE``; ``python -m harness list`` shows them), says whether
a path looks like its layout (:meth:`DatasetSource.claims`) and opens it as a
:class:`~harness.data.types.DataSource`.

Without ``--data`` a run uses the embedded cohort; ``--data PATH`` uses the one source that claims
PATH; ``--dataset NAME`` names the source (needed when several claim a path, or none does).
Several ``--data NAME=PATH`` make one cohort with a ``source`` stratum (:mod:`harness.data.cohort`).
"""

from __future__ import annotations

import abc
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from harness.config import DataSpec, Profile, resolve_dataset_settings
from harness.data.types import DatasetError, DataSource
from harness.registry import DATASETS
from harness.settings import SettingsError, validate_settings

__all__ = ["DEFAULT_DATASET", "DatasetSettings", "DatasetSource", "data_specs", "data_working_size",
           "named_entry", "open_dataset", "pick_dataset"]

DEFAULT_DATASET = "mni152-lesions"  # registered by harness.data.embedded
# the size images are loaded at when neither a method nor the source names one (the quick profile's)
DEFAULT_WORKING_SIZE = 128
_NAMED_ENTRY = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)=(.+)$")  # --data NAME=PATH


class DatasetSettings(BaseModel):
    """Base of every data source's settings: frozen, unknown keys refused, values checked by type."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DatasetSource(abc.ABC):
    """Base class of a registered data source (``@register_dataset(NAME)`` from
    :mod:`harness.registry`, or the entry-point group ``harness.datasets``). Never instantiated:
    the registry holds the class, and ``claims``/``open`` are class methods.

    Subclasses set ``description``, ``expects`` (what :meth:`claims` looks for, shown when no
    source claims a path), ``Settings`` and ``profile_defaults`` (profile name -> values that
    differ from the class defaults), and implement :meth:`open`. ``section`` is the ``--set``
    section of the settings (default: the name); ``takes_path = False`` marks a source that makes
    its own data and is chosen by name only.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    expects: ClassVar[str] = ""
    section: ClassVar[str] = ""
    takes_path: ClassVar[bool] = True
    Settings: ClassVar[type[DatasetSettings]] = DatasetSettings
    profile_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    @classmethod
    def settings_section(cls) -> str:
        return cls.section or cls.name

    @classmethod
    def claims(cls, path: Path) -> bool:
        """Whether ``path`` (an existing file or folder) looks like this source's layout. Cheap
        (names, not pixels): every source is asked about every ``--data`` path."""
        return False

    @classmethod
    @abc.abstractmethod
    def open(cls, path: Path | None, settings: DatasetSettings, seed: int, progress: bool) -> DataSource:
        """The data at ``path`` (None when ``takes_path`` is False) read by ``settings``; a
        :class:`~harness.data.types.DatasetError` says why it cannot be used."""

    @classmethod
    def working_size(cls, settings: DatasetSettings) -> int:
        """The square size images are loaded at when no method of the run declares its own:
        the settings' ``image_size`` where there is one."""
        size = getattr(settings, "image_size", None)
        return int(size) if size else DEFAULT_WORKING_SIZE

    @classmethod
    def validate_registration(cls, name: str) -> None:
        """Called by ``register_dataset``: refuse a source the harness could not use."""
        if getattr(cls.open, "__isabstractmethod__", False):
            raise TypeError(f"dataset {name!r}: {cls.__name__} does not implement open()")
        if not (isinstance(cls.Settings, type) and issubclass(cls.Settings, BaseModel)):
            raise TypeError(f"dataset {name!r}: Settings must be a pydantic model (a DatasetSettings subclass)")
        section = cls.section or name
        if not section or "." in section or "=" in section:
            raise ValueError(f"dataset {name!r}: settings section {section!r} must be a name without '.' or '='")
        for profile, values in cls.profile_defaults.items():
            try:
                validate_settings(section, cls.Settings, values)
            except SettingsError as exc:
                raise ValueError(f"dataset {name!r}: profile_defaults[{profile!r}]: {exc}") from None


def pick_dataset(data: str | None, dataset: str | None) -> str:
    """The registered source for ``--data`` and ``--dataset``: the named one, else the one that
    claims the path, else (no path) the embedded cohort. A :class:`DatasetError` says why none fits."""
    if dataset is not None:
        cls = DATASETS.get(dataset)  # an unknown name fails here, with a did-you-mean hint
        if data is None and cls.takes_path:
            raise DatasetError(f"dataset {dataset!r} reads your files: give --data PATH ({cls.expects})")
        if data is not None and not cls.takes_path:
            raise DatasetError(f"dataset {dataset!r} makes its own data: drop --data {data}")
        if data is not None:
            _existing(data)
        return dataset
    if data is None:
        return DEFAULT_DATASET
    path = _existing(data)
    readers = [n for n in DATASETS.names() if DATASETS.get(n).takes_path]
    claimed = [n for n in readers if _claims(n, path)]
    if len(claimed) == 1:
        return claimed[0]
    if claimed:
        raise DatasetError(f"several data sources recognise {data}: {', '.join(claimed)}; choose one "
                           f"with --dataset NAME")
    expected = "; ".join(f"{n}: {DATASETS.get(n).expects}" for n in readers)
    broken = f" (not loaded: {', '.join(DATASETS.load_errors)}; see `python -m harness list`)" \
        if DATASETS.load_errors else ""
    raise DatasetError(f"no data source recognises {data} (expected {expected}){broken}; "
                       f"name one with --dataset NAME")


def data_specs(data: str | Sequence[str] | None, dataset: str | None, profile: Profile) -> tuple[DataSpec, ...]:
    """The ``data`` entry of a run's config: each chosen source, its path and resolved settings.
    ``data`` is a path, or the ``--data`` entries: one ``PATH``, or ``NAME=PATH`` for each source
    of a cohort (``--data brats=PATH --data ixi=PATH``); ``dataset`` names the source of every path."""
    entries = [data] if isinstance(data, str) else list(data or [])
    named = [named_entry(e) for e in entries]
    if len(entries) <= 1 and not any(named):
        path = entries[0] if entries else None
        name = pick_dataset(path, dataset)
        return (DataSpec(dataset=name, path=path, settings=resolve_dataset_settings(profile, name)),)
    specs = []
    for entry, pair in zip(entries, named):
        if pair is None:
            raise DatasetError(f"several --data form one cohort: name each source as --data NAME=PATH "
                               f"(got {entry!r})")
        name = pick_dataset(pair[1], dataset)
        specs.append(DataSpec(dataset=name, path=pair[1], settings=resolve_dataset_settings(profile, name),
                              source=pair[0]))
    return tuple(specs)


def open_dataset(specs: tuple[DataSpec, ...], seed: int, progress: bool = True) -> DataSource:
    """Open a config's data: its one source, or its named sources as one
    :class:`~harness.data.cohort.Cohort`; a cohort with a single label is refused here."""
    from harness.data.cohort import Cohort

    opened = [(spec.source, _open(spec, seed, progress)) for spec in specs]
    source = opened[0][1] if len(opened) == 1 and not opened[0][0] else Cohort(opened)
    labels = Counter(r.label for r in source.records)
    if len(labels) == 1:
        ((label, n),) = labels.items()
        raise DatasetError(f"only one label in {source.root}: {n} {label} images; a benchmark needs tumor and "
                           f"no_tumor images (healthy volumes alone: add lesion volumes with masks as a second "
                           f"source, --data NAME=PATH)")
    return source


def _open(spec: DataSpec, seed: int, progress: bool) -> DataSource:
    cls = DATASETS.get(spec.dataset)
    path = Path(spec.path).expanduser() if spec.path is not None else None
    return cls.open(path, _typed_settings(spec), seed, progress)


def named_entry(entry: str) -> tuple[str, str] | None:
    """(name, path) of a ``NAME=PATH`` entry; None for a plain path (also one holding '=')."""
    match = _NAMED_ENTRY.match(entry)
    if match is None or Path(entry).expanduser().exists():
        return None
    return match.group(1), match.group(2)


def data_working_size(specs: tuple[DataSpec, ...]) -> int:
    """The size images are loaded at when no method of the run declares one (see
    :meth:`DatasetSource.working_size`)."""
    return max(DATASETS.get(s.dataset).working_size(_typed_settings(s)) for s in specs)


def _typed_settings(spec: DataSpec) -> DatasetSettings:
    """A stored spec's settings as the source's typed model (validated again)."""
    cls = DATASETS.get(spec.dataset)
    return validate_settings(cls.settings_section(), cls.Settings, spec.settings)


def _existing(data: str) -> Path:
    path = Path(data).expanduser()
    if not path.exists():
        hint = f"; to use the data source of that name, pass --dataset {data}" if data in DATASETS else ""
        raise DatasetError(f"data path {data!r} does not exist{hint}")
    return path


def _claims(name: str, path: Path) -> bool:
    try:
        return bool(DATASETS.get(name).claims(path))
    except OSError as exc:
        raise DatasetError(f"data source {name!r} could not look at {path}: {exc}") from None
