"""The official GAIC and FCDB metrics against hand-computed cases (including MOS ties)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer.metrics import box_disp, box_iou, fcdb_metrics, gaic_image_metrics, gaic_metrics, stable_desc_order

# 12 valid crops. Sorted by MOS, stable descending: 4 | 1 2 7 | 0 6 9 | 8 | 3 | 10 | 5 | 11,
# so the 5th best is crop 0 (MOS 3.0) and crops 6 and 9 tie with it; the 10th best is crop 10 (1.5).
MOS = [3.0, 4.0, 4.0, 2.0, 5.0, 1.0, 3.0, 4.0, 2.5, 3.0, 1.5, 0.5]
# The model returns crops 9, 7, 3, 4 (GT ranks 6, 3, 8, 0), then the rest in index order.
PRED = [-1.0, -2.0, -3.0, 8.0, 7.0, -4.0, -5.0, 9.0, -6.0, 10.0, -7.0, -8.0]


def test_stable_descending_order_keeps_annotation_order_on_ties() -> None:
    assert stable_desc_order(MOS) == [4, 1, 2, 7, 0, 6, 9, 8, 3, 10, 5, 11]


def test_acc_uses_the_mos_threshold_so_ties_with_the_nth_crop_count() -> None:
    m = gaic_image_metrics(MOS, PRED)
    # Crop 9 is 7th by rank but ties the 5th best's MOS (3.0): a hit for Acc_1/5.
    assert m["acc1_5"] == 1.0
    assert m["acc2_5"] == 1.0
    assert m["acc3_5"] == pytest.approx(2 / 3)  # crop 3 (MOS 2.0) misses
    assert m["acc4_5"] == pytest.approx(3 / 4)
    for k in (1, 2, 3, 4):  # all four returned crops have MOS >= 1.5
        assert m[f"acc{k}_10"] == 1.0


def test_weighted_acc_uses_sorted_gt_ranks_of_returned_crops() -> None:
    m = gaic_image_metrics(MOS, PRED)
    # Crop 9's GT rank is 6 (stable sort puts it after 0 and 6), so it is NOT in the top-5 by rank.
    assert m["wacc1_5"] == 0.0
    assert m["wacc2_5"] == pytest.approx(math.exp(-0.6) / 2)
    assert m["wacc3_5"] == pytest.approx(math.exp(-0.6) / 3)
    assert m["wacc4_5"] == pytest.approx((1 + math.exp(-0.4)) / 4)
    assert m["wacc1_10"] == pytest.approx(math.exp(-0.6))
    assert m["wacc2_10"] == pytest.approx((math.exp(-0.3) + math.exp(-0.5)) / 2)
    assert m["wacc3_10"] == pytest.approx((math.exp(-0.3) + math.exp(-0.5) + math.exp(-0.6)) / 3)
    assert m["wacc4_10"] == pytest.approx((1 + math.exp(-0.2) + math.exp(-0.4) + math.exp(-0.5)) / 4)


def test_tied_predictions_are_returned_in_annotation_order() -> None:
    # All predictions equal: the "returned" crops are 0, 1, 2, 3 (annotation order).
    m = gaic_image_metrics(MOS, [0.0] * len(MOS))
    assert m["acc1_5"] == 1.0  # crop 0 is the 5th best
    assert m["acc4_5"] == pytest.approx(3 / 4)  # crop 3 (2.0) misses
    assert m["wacc1_5"] == pytest.approx(math.exp(-4 / 5))  # GT rank 4 at ideal position 0
    assert m["srcc"] == 0.0 and m["plcc"] == 0.0  # undefined correlation counts as 0


def test_dataset_averages_percentages_and_means_over_k() -> None:
    perfect = (np.array(MOS), np.array(MOS))
    m = gaic_metrics([perfect, (np.array(MOS), np.array(PRED))])
    assert m["acc1_5"] == pytest.approx(100.0)
    assert m["acc3_5"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert m["acc5"] == pytest.approx(np.mean([m[f"acc{k}_5"] for k in (1, 2, 3, 4)]))
    assert m["wacc10"] == pytest.approx(np.mean([m[f"wacc{k}_10"] for k in (1, 2, 3, 4)]))
    from scipy.stats import pearsonr, spearmanr

    assert m["srcc"] == pytest.approx((1.0 + spearmanr(MOS, PRED)[0]) / 2)
    assert m["plcc"] == pytest.approx((1.0 + pearsonr(MOS, PRED)[0]) / 2)
    assert m["images"] == 2


def _official(mos: list[float], out: list[float]) -> dict[str, float]:
    """An independent transcription of the loop in GAIC's TestAccuracy.py, for one image."""
    id_mos = sorted(range(len(mos)), key=lambda k: mos[k], reverse=True)
    id_out = sorted(range(len(out)), key=lambda k: out[k], reverse=True)
    rank = [id_mos.index(id_out[k]) for k in range(4)]
    res = {}
    for k in range(4):
        res[f"acc{k + 1}_5"] = sum(mos[id_out[j]] >= mos[id_mos[4]] for j in range(k + 1)) / (k + 1)
        res[f"acc{k + 1}_10"] = sum(mos[id_out[j]] >= mos[id_mos[9]] for j in range(k + 1)) / (k + 1)
        r = sorted(rank[: k + 1])
        res[f"wacc{k + 1}_5"] = sum(math.exp(-0.2 * (r[j] - j)) for j in range(k + 1) if r[j] <= 4) / (k + 1)
        res[f"wacc{k + 1}_10"] = sum(math.exp(-0.1 * (r[j] - j)) for j in range(k + 1) if r[j] <= 9) / (k + 1)
    return res


def test_matches_the_official_loop_on_random_scores_with_many_ties() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(10, 90))
        mos = list(np.round(rng.uniform(1, 5, n) * 2) / 2)  # half steps: lots of ties
        out = list(np.round(rng.normal(size=n), 1))  # ties in predictions too
        ours = gaic_image_metrics(mos, out)
        for key, value in _official(mos, out).items():
            assert ours[key] == pytest.approx(value), key


def test_too_few_crops_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        gaic_image_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])


def test_fcdb_iou_and_disp_by_hand() -> None:
    assert box_iou([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)
    assert box_disp([0, 0, 10, 10], [5, 5, 15, 15], 20, 20) == pytest.approx(1.0)
    m = fcdb_metrics([([0, 0, 10, 10], [5, 5, 15, 15], 20, 20), ([0, 0, 10, 10], [0, 0, 10, 10], 40, 10)])
    assert m["iou"] == pytest.approx((1 / 7 + 1) / 2)
    assert m["disp"] == pytest.approx((1.0 + 0.0) / 2 / 4)
