"""``FewShotDataModule``: superpixel-pseudolabel training episodes and the 1-shot test protocol."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datasets.fewshot.episodes import AugmentParams, EpochIndexSampler, PseudolabelEpisodes, to_three_channels
from datasets.fewshot.protocol import class_slices, fold_splits, keep_slices, query_plan, support_slices
from datasets.fewshot.slices import image_slices, label_slices, ras_to_stack, square_resize
from datasets.volumes.intensity import zscore_global, zscore_volume
from datasets.volumes.io import find_scans, read_scan
from datasets.volumes.label_maps import check_label_range
from datasets.volumes.label_maps import label_map as resolve_label_map
from datasets.volumes.manifest import MANIFEST_NAME, read_manifest, scan_windows
from datasets.volumes.pseudolabels import cached_pseudolabels, pseudolabel_name

logger = logging.getLogger(__name__)
DEFAULT_ORGANS = ["liver", "spleen", "kidney_left", "kidney_right"]


def to_slices(array: np.ndarray, size: int, order: int, fill: float) -> np.ndarray:
    """``[X, Y, Z]`` RAS volume -> ``[Z, size, size]`` slices (anterior up), padded square then resized."""
    return square_resize(ras_to_stack(array), size, order, fill)


class ProtocolItems(Dataset):
    """Test items of the 1-shot protocol: one query slice with its chunk's support slice."""

    def __init__(
        self, items: list[dict[str, Any]], images: dict[str, np.ndarray], labels: dict[str, np.ndarray]
    ):
        self.items, self.images, self.labels = items, images, labels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        it = self.items[index]
        sup, qry = it["support_scan"], it["query_scan"]
        return {
            "support_image": to_three_channels(self.images[sup][it["support_z"]]),
            "support_mask": torch.from_numpy(
                (self.labels[sup][it["support_z"]] == it["class_id"]).astype(np.int64)
            ),
            "query_image": to_three_channels(self.images[qry][it["query_z"]]),
            "query_mask": torch.from_numpy(
                (self.labels[qry][it["query_z"]] == it["class_id"]).astype(np.int64)
            ),
            **{k: it[k] for k in ("organ", "query_scan", "query_z", "support_z", "gt_total", "overlay")},
        }


class FewShotDataModule(L.LightningDataModule):
    """SSL-ALPNet data: pseudolabel episodes from the training scans, 1-shot protocol for testing.

    Args:
        root: Prepared folder ``<root>/<scan_id>/{image,label}.nii.gz`` + ``manifest.json`` (the
            sample's layout too; see :mod:`datasets.volumes.manifest`).
        label_map: None (the manifest's, i.e. the ids of the label files), or a registered map name, a
            JSON file or a dict, which must agree with the manifest on every class both name.
        organs: Classes tested (names of the label map).
        setting: 1, or 2 = remove from training every slice containing a tested organ.
        normalize: ``volume`` (per-scan z-score, MR) or ``global`` (one mean/std, CT).
        clip_windows: ``{MODALITY: [low, high] or null}`` clipping before normalising, over the
            manifest's ``windows``. Every scan's modality needs a window in one of them (null = none).
        image_size: Slices are padded square and resized to this size.
        split: Explicit ``{"support": id, "queries": [...], "train": [...]}``; else from the folds.
            A query may be the support scan itself (within-scan evaluation, for data with one
            labelled scan per modality): its support slices are then left out of the queries.
        n_folds: Folds over the sorted scan ids (when ``split`` is None).
        fold: Fold of this run (one run trains and tests one fold; see ``aggregate_folds``).
        support_index: Which scan of the fold's test chunk is the support.
        n_parts: Chunks of a class's z-range (support slices at the chunk centres).
        episodes_per_epoch: Training episodes per epoch.
        batch_size: Episodes per training batch.
        num_workers: DataLoader workers.
        seed: Seed of the episodes.
        min_fg_pixels: Smallest superpixel drawn as foreground (at ``image_size``).
        augment: Apply SSL-ALPNet's augmentations to support and query.
        superpixel_scale: Felzenszwalb scale.
        superpixel_sigma: Felzenszwalb sigma.
        superpixel_min_size: Felzenszwalb min_size (ALPNet: 400 at 256 px).
        body_threshold: Body-mask threshold on min-max scaled slices (None = Otsu).
        pseudolabel_dir: Write/read pseudolabels as NIfTI here (None: compute in memory).
        num_classes: Background + foreground of an episode (2; linked to the model).
        in_channels: Channels fed to the backbone (grey tiled to 3).
    """

    def __init__(
        self,
        root: str,
        label_map: str | dict[str, int] | None = None,
        organs: list[str] | None = None,
        setting: Literal[1, 2] = 1,
        normalize: Literal["volume", "global"] = "volume",
        clip_windows: dict[str, list[float] | None] | None = None,
        image_size: int = 256,
        split: dict[str, Any] | None = None,
        n_folds: int = 5,
        fold: int = 0,
        support_index: int = 0,
        n_parts: int = 3,
        episodes_per_epoch: int = 1000,
        batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
        min_fg_pixels: int = 100,
        augment: bool = True,
        superpixel_scale: float = 1.0,
        superpixel_sigma: float = 1.0,
        superpixel_min_size: int = 400,
        body_threshold: float | None = None,
        pseudolabel_dir: str | None = None,
        num_classes: int = 2,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.root, self.num_classes, self.in_channels = Path(root), num_classes, in_channels
        self.organs = list(organs or DEFAULT_ORGANS)
        self.label_map: dict[str, int] | None = None
        self.manifest: dict[str, Any] = {}
        self.images: dict[str, np.ndarray] = {}
        self.labels: dict[str, np.ndarray] = {}
        self.train_set: PseudolabelEpisodes | None = None
        self.test_set: ProtocolItems | None = None

    def _resolve(self) -> tuple[dict[str, int], dict[str, Any]]:
        self.manifest = read_manifest(self.root)
        lmap = dict(self.manifest["label_map"])
        if self.hparams.label_map is not None:
            given = resolve_label_map(self.hparams.label_map)
            clash = {n: (i, lmap[n]) for n, i in given.items() if n in lmap and lmap[n] != i}
            if clash:
                raise ValueError(
                    f"FewShotDataModule: label_map {self.hparams.label_map!r} gives {given} but the label "
                    f"files of {self.root} use {lmap} ({self.root / MANIFEST_NAME}); expected the same ids "
                    "(set label_map: null, or re-prepare with --target_map)"
                )
        missing = [o for o in self.organs if o not in lmap]
        if missing:
            raise ValueError(f"FewShotDataModule: organs {missing} are not in the label map {sorted(lmap)}")
        split = self.hparams.split
        if split is None:
            split = fold_splits(find_scans(self.root), self.hparams.n_folds, self.hparams.support_index)[
                self.hparams.fold
            ]
        if split["support"] in split["train"]:
            raise ValueError(
                f"FewShotDataModule: support scan {split['support']!r} must not be a training scan"
            )
        return lmap, split

    def _load(self, ids: list[str]) -> None:
        if not ids:  # every scan is loaded already (setup("test") after setup("fit"))
            return
        size = self.hparams.image_size
        windows = scan_windows(self.manifest, ids, self.hparams.clip_windows, str(self.root))
        raw, scales = {}, {}
        for sid in ids:
            image, label = read_scan(self.root, sid)
            scales[sid] = max(image.spacing[:2]) * max(image.array.shape[:2]) / size
            raw[sid] = image.array if windows[sid] is None else np.clip(image.array, *windows[sid])
            if label is not None:
                check_label_range(label.array, self.manifest["label_map"], f"{self.root / sid}/label.nii.gz")
                self.labels[sid] = label_slices(label.array, size)
        if max(scales.values()) > 1.1 * min(scales.values()):
            logger.warning(
                "scans are resized to different pixel sizes (mm per pixel at %d px: %s): organs differ in "
                "scale; prepare them with --target_spacing_mm and --size for one pixel size",
                size, ", ".join(f"{k} {v:.2f}" for k, v in scales.items()),
            )  # fmt: skip
        if self.hparams.normalize == "global":
            normed = dict(zip(raw, zscore_global(list(raw.values())), strict=True))
        else:
            normed = {sid: zscore_volume(arr) for sid, arr in raw.items()}
        for sid, arr in normed.items():
            self.images[sid] = image_slices(arr, size)

    def setup(self, stage: str | None = None) -> None:
        """Load scans, make pseudolabels (fit) and the protocol items (test)."""
        self.label_map, self.split = self._resolve()
        needed = [*self.split["train"], self.split["support"], *self.split["queries"]]
        self._load([s for s in dict.fromkeys(needed) if s not in self.images])
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._episodes()
        if stage in (None, "test") and self.test_set is None:
            self.test_set = ProtocolItems(self.protocol_items(), self.images, self.labels)

    def _episodes(self) -> PseudolabelEpisodes:
        h = self.hparams
        params = {"scale": h.superpixel_scale, "sigma": h.superpixel_sigma, "min_size": h.superpixel_min_size,
                  "body_threshold": h.body_threshold}  # fmt: skip
        exclude = [self.label_map[o] for o in self.organs] if h.setting == 2 else []
        images, pseudos, keep = [], [], []
        for sid in self.split["train"]:
            path = None
            if h.pseudolabel_dir:
                path = Path(h.pseudolabel_dir) / sid / pseudolabel_name(**params, size=h.image_size)
            pseudos.append(cached_pseudolabels(self.images[sid], path, **params))
            images.append(self.images[sid])
            keep.append(keep_slices(self.labels.get(sid), exclude, self.images[sid].shape[0]))
        return PseudolabelEpisodes(
            images,
            pseudos,
            keep,
            h.episodes_per_epoch,
            h.seed,
            h.min_fg_pixels,
            AugmentParams() if h.augment else None,
        )

    def protocol_items(self) -> list[dict[str, Any]]:
        """Every (organ, query scan, query slice) with its support slice.

        Raises:
            ValueError: When the support scan lacks a label volume or a tested organ.
        """
        sup = self.split["support"]
        if sup not in self.labels:
            raise ValueError(f"FewShotDataModule: support scan {sup!r} has no label.nii.gz under {self.root}")
        items = []
        for organ in self.organs:
            cid = self.label_map[organ]
            supports = support_slices(
                class_slices(self.labels[sup], cid, f"support scan {sup!r} ({organ})"), self.hparams.n_parts
            )
            for qry in self.split["queries"]:
                if qry not in self.labels:
                    raise ValueError(f"FewShotDataModule: query scan {qry!r} has no label.nii.gz")
                gt = self.labels[qry] == cid
                if not gt.any():
                    logger.warning("query scan %r has no %s (id %d): not evaluated for it", qry, organ, cid)
                    continue
                # Within-scan evaluation (the query is the support scan): its support slices are
                # not queries, and the 3D Dice counts only the slices that are.
                within = qry == sup
                plan = query_plan(
                    class_slices(self.labels[qry], cid, f"query scan {qry!r}"),
                    supports,
                    exclude=supports if within else (),
                )
                gt_total = int(gt[[qz for qz, _ in plan]].sum()) if within else int(gt.sum())
                middle = plan[len(plan) // 2][0]
                items += [
                    {"organ": organ, "class_id": cid, "support_scan": sup, "support_z": sz, "query_scan": qry,
                     "query_z": qz, "gt_total": gt_total, "overlay": qz == middle}
                    for qz, sz in plan
                ]  # fmt: skip
        return items

    def train_dataloader(self) -> DataLoader:
        """Episodes; a new block of episode indices every epoch."""
        return DataLoader(
            self.train_set,
            batch_size=self.hparams.batch_size,
            sampler=EpochIndexSampler(len(self.train_set)),
            num_workers=self.hparams.num_workers,
            drop_last=True,
        )

    def test_dataloader(self) -> DataLoader:
        """The 1-shot protocol items, one per batch."""
        return DataLoader(self.test_set, batch_size=1, shuffle=False, num_workers=self.hparams.num_workers)
