"""The paper's training settings per stage (section 4.3), kept free of torch so ``--help`` is fast."""

from __future__ import annotations

from typing import Any

# AdamW; lr 1e-7 / 1e-6 / 5e-6; 10 / 10 / 60 epochs; 224x224; no flips or crops.
DEFAULTS: dict[str, dict[str, Any]] = {
    "composition": {"lr": 1e-7, "epochs": 10, "batch_size": 16,
                    "data_help": "CADB labels: JSON {image: [labels]} (images/ beside it) or the 0/1 CSV form."},
    "aesthetic": {"lr": 1e-6, "epochs": 10, "batch_size": 16,
                  "data_help": "AADB label folder (imgList<Split>Regression_<Attr>.txt) or the attribute CSV form."},
    "cropping": {"lr": 5e-6, "epochs": 60, "batch_size": 1,
                 "data_help": "GAICD folder (images/, annotations/) or the crop CSV form."},
}
STAGES: tuple[str, ...] = tuple(DEFAULTS)
