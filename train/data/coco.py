"""COCO 2017 as one-frame sequences (docs/training.md, data sources): every non-crowd annotation of
``<root>/annotations/instances_train2017.json`` is a sequence whose only frame is its image in
``<root>/images/train2017/``.

The visibility flag is the official w > 50 and h > 50, but the sampler ignores it for image datasets
(as the official sampler does), so small objects are used too. Boxes come straight from the JSON
(no pycocotools needed); masks are not used by the GRM recipe.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from grm.runtime.errors import DatasetError
from grm.train.data.base import SequenceInfo, read_rgb, require_dir


class Coco:
    """COCO 2017 training annotations, one sequence each."""

    name = "COCO17"
    is_video = False

    def __init__(self, root: str | Path, split: str = "train", version: str = "2017") -> None:
        self.root = require_dir(Path(root), "COCO", "set --coco-dir or GRM_COCO_DIR")
        self.image_dir = self.root / "images" / f"{split}{version}"
        ann_path = self.root / "annotations" / f"instances_{split}{version}.json"
        if not ann_path.is_file():
            raise DatasetError(
                f"COCO annotations {ann_path} not found; expected <root>/annotations/ and <root>/images/"
            )
        files, self.image_index, self.boxes = _parse(ann_path)
        self.files = files
        if not len(self.boxes):
            raise DatasetError(f"{ann_path} has no non-crowd annotations")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def sequence_info(self, seq: int) -> SequenceInfo:
        box = self.boxes[seq : seq + 1]
        return SequenceInfo(boxes=box, visible=(box[:, 2] > 50) & (box[:, 3] > 50))

    def frame(self, seq: int, frame_id: int = 0) -> NDArray[np.uint8]:
        return read_rgb(self.image_dir / self.files[int(self.image_index[seq])])


def _parse(path: Path) -> tuple[list[str], NDArray[np.int64], NDArray[np.float32]]:
    """File names, and per non-crowd annotation its image's position in that list and its xywh box."""
    try:
        data = json.loads(path.read_text())
        images = {img["id"]: img["file_name"] for img in data["images"]}
        anns = [a for a in data["annotations"] if not a.get("iscrowd", 0)]
        order = {image_id: i for i, image_id in enumerate(images)}
        index = np.asarray([order[a["image_id"]] for a in anns], dtype=np.int64)
        boxes = np.asarray([[float(v) for v in a["bbox"]] for a in anns], dtype=np.float32).reshape(-1, 4)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path} is not a COCO instances file ({type(e).__name__}: {e})") from e
    return list(images.values()), index, boxes
