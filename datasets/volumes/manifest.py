"""The prepared folder's ``manifest.json``: label map, each scan's modality, intensity windows per modality.

Written by every ``python -m datasets.volumes`` preparation (scans prepared into an existing folder are
merged into its manifest) and read by the volume DataModules::

    {
      "format_version": 1,
      "label_map": {"liver": 1, "spleen": 2, ...},          ids of every label.nii.gz
      "windows": {"CT": [-125.0, 275.0], "MR": null},       clip before normalising; null = no clip
      "scans": {"ct": {"modality": "CT", "label": true, "shape": [...], "spacing_mm": [...], ...}}
    }

A window belongs to a modality, never to a scan id, so a new scan of a known modality gets its window;
a scan whose modality has no entry (neither here nor in the DataModule's ``clip_windows``) is an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets.atomic_io import atomic_write_json
from datasets.volumes.label_maps import checked_map

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
Window = tuple[float, float] | None


def checked_window(value: object, where: str) -> Window:
    """``[low, high]`` with ``low < high`` as a tuple, or None (no clipping).

    Raises:
        ValueError: Naming ``where`` and the value.
    """
    if value is None:
        return None
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not value[0] < value[1]
    ):
        raise ValueError(f"{where}: window {value!r} is not [low, high] with low < high (or null for none)")
    return float(value[0]), float(value[1])


def checked_windows(windows: Mapping[str, object] | None, where: str) -> dict[str, Window]:
    """``{MODALITY: window}`` with upper-case modality keys (see :func:`checked_window`)."""
    return {str(m).upper(): checked_window(w, f"{where} [{m}]") for m, w in (windows or {}).items()}


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The validated manifest of a prepared folder.

    Raises:
        FileNotFoundError: When ``<root>/manifest.json`` is missing (older folders: how to add it).
        ValueError: When it is not a manifest of this format.
    """
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        older = (
            " (it has the older label_map.json: re-run its preparation)"
            if (Path(root) / "label_map.json").is_file()
            else ""
        )
        raise FileNotFoundError(
            f"{path} does not exist{older}; expected a folder written by python -m datasets.volumes, or "
            'write {"format_version": 1, "label_map": {...}, "windows": {"CT": [low, high], "MR": null}, '
            '"scans": {"<scan_id>": {"modality": "CT"}}} there'
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: expected a JSON object with format_version {FORMAT_VERSION}")
    scans = manifest.get("scans")
    if not isinstance(scans, dict) or not all(
        isinstance(r, dict) and r.get("modality") for r in scans.values()
    ):
        raise ValueError(f'{path}: "scans" must map every scan id to {{"modality": "CT", ...}}')
    manifest["label_map"] = checked_map(manifest.get("label_map") or {}, f"{path} label_map")
    manifest["windows"] = checked_windows(manifest.get("windows"), f"{path} windows")
    for record in scans.values():
        record["modality"] = str(record["modality"]).upper()
    return manifest


def merge_manifest(
    root: str | Path,
    label_map: Mapping[str, int],
    scans: Mapping[str, Mapping[str, Any]],
    windows: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """Add (or replace) scans in ``<root>/manifest.json``, creating it when absent; written atomically.

    Args:
        root: The prepared folder.
        label_map: ``{name: id}`` of the scans' label volumes.
        scans: Scan id -> record (``modality`` required; shape, spacing, sources, ...).
        windows: ``{MODALITY: [low, high] or None}`` to record.

    Returns:
        The merged manifest.

    Raises:
        ValueError: When the folder's manifest has another label map, or another window for a modality.
    """
    path = Path(root) / MANIFEST_NAME
    new_windows = checked_windows(windows, f"windows for {root}")
    if path.is_file():
        manifest = read_manifest(root)
        if manifest["label_map"] != dict(label_map):
            raise ValueError(
                f"{path} has label map {manifest['label_map']}, these scans {dict(label_map)}; "
                "expected the same ids in one prepared folder (prepare into another --out)"
            )
        for modality, value in new_windows.items():
            old = manifest["windows"].get(modality, value)
            if old != value:
                raise ValueError(
                    f"{path} has window {old} for {modality}, these scans {value}; expected one per modality"
                )
    else:
        manifest = {
            "format_version": FORMAT_VERSION,
            "label_map": dict(label_map),
            "windows": {},
            "scans": {},
        }
    manifest["windows"].update(new_windows)
    for sid, record in scans.items():
        manifest["scans"][sid] = {**record, "modality": str(record["modality"]).upper()}
    manifest["scans"] = dict(sorted(manifest["scans"].items()))
    atomic_write_json(path, manifest)
    return manifest


def scan_windows(
    manifest: Mapping[str, Any], scan_ids: Sequence[str], overrides: Mapping[str, object] | None, where: str
) -> dict[str, Window]:
    """The window of each scan: its modality's, from ``overrides`` (a DataModule's) or the manifest.

    Args:
        manifest: From :func:`read_manifest`.
        scan_ids: Scans to window.
        overrides: ``{MODALITY: [low, high] or None}`` taking precedence over the manifest's.
        where: The prepared folder, for messages.

    Returns:
        Scan id -> ``(low, high)`` or None (no clipping).

    Raises:
        ValueError: For an override keyed by a scan id (the old format), a scan missing from the
            manifest, or a scan whose modality has no window anywhere.
    """
    scans = manifest["scans"]
    for key in overrides or {}:
        if key in scans and str(key).upper() not in {r["modality"] for r in scans.values()}:
            raise ValueError(
                f"clip_windows key {key!r} is a scan id of {where}; windows are set per modality "
                f"({', '.join(sorted({r['modality'] for r in scans.values()}))}), e.g. clip_windows: "
                f"{{{scans[key]['modality']}: [low, high]}}"
            )
    windows = {**manifest["windows"], **checked_windows(overrides, "clip_windows")}
    out: dict[str, Window] = {}
    for sid in scan_ids:
        if sid not in scans:
            raise ValueError(
                f"scan {sid!r} is not in {where}/{MANIFEST_NAME} (its scans: {', '.join(scans)})"
            )
        modality = scans[sid]["modality"]
        if modality not in windows:
            raise ValueError(
                f"scan {sid!r} of {where} is {modality} but no window is set for {modality} (manifest "
                f"windows {manifest['windows']}); set clip_windows: {{{modality}: [low, high]}} "
                f"or {{{modality}: null}}"
            )
        out[sid] = windows[modality]
    return out
