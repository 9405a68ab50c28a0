"""The annotation check's support rule: a group is flagged only when its cells' own gene activity places them near
the transferred label's confirmed cells (synthetic supports; the transfer's own support is tested in
test_transfer.py)."""
import numpy as np
import pandas as pd
import pytest

from omics_cl import tl

CLASSES = ["Pvalb", "Sst", "Astro", "Oligo"]


def _atlas_with_two_one_way_groups():
    """200 Pvalb and 200 Sst cells that the transfer confirms, 40 Sst cells it calls Pvalb, 60 Astro cells it
    confirms and 30 atlas-Astro cells it calls Oligo (no atlas Oligo: a relabelled type). Support (standardised
    units): confirmed Pvalb cells +1 for Pvalb / -1 for Sst, confirmed Sst the reverse; the 40 Sst -> Pvalb cells sit
    at gain ``sst_to_pvalb_gain``; the Oligo cells support Oligo."""
    atlas = np.array(["Pvalb"] * 200 + ["Sst"] * 240 + ["Astro"] * 90, dtype=object)
    transferred = np.array(["Pvalb"] * 200 + ["Sst"] * 200 + ["Pvalb"] * 40 + ["Astro"] * 60 + ["Oligo"] * 30,
                           dtype=object)
    support = np.zeros((len(atlas), len(CLASSES)))
    support[:200, :2] = [1.0, -1.0]
    support[200:400, :2] = [-1.0, 1.0]
    support[500:, 3] = 2.0
    return atlas, transferred, support


@pytest.mark.parametrize("gain, kept", [(0.0, False), (0.6, False), (1.0, True), (2.0, True)])
def test_support_position_keeps_groups_near_the_transferred_label(gain, kept):
    """Confirmed Sst cells have gain (Pvalb - Sst) -2, confirmed Pvalb +2, so gain g sits at (g + 2) / 4: half way
    (0.5) and 0.65 of the way are dropped, 0.75 and 1 kept (default 0.7); Astro -> Oligo has no confirmed Oligo cell,
    so it cannot be placed and stays flagged."""
    atlas, transferred, support = _atlas_with_two_one_way_groups()
    support[400:440, :2] = [gain / 2, -gain / 2]
    frame = pd.DataFrame(support, columns=CLASSES)
    groups = tl.confusion_groups(atlas.astype(str), transferred.astype(str), atlas != transferred,
                                 class_support=frame).set_index(["atlas_label", "transferred_label"])
    assert groups.loc[("Sst", "Pvalb"), "support_position"] == pytest.approx((gain + 2) / 4)
    assert np.isnan(groups.loc[("Astro", "Oligo"), "support_position"])
    flags, _ = tl.annotation_flags(atlas, transferred, np.ones(len(atlas)), CLASSES, class_support=frame)
    assert flags[400:440].tolist() == [kept] * 40
    assert flags[500:].all() and not flags[:400].any() and not flags[440:500].any()
    unruled, _ = tl.annotation_flags(atlas, transferred, np.ones(len(atlas)), CLASSES, class_support=frame,
                                     min_support_position=None)
    assert unruled[400:440].all() and unruled[500:].all()
    assert np.array_equal(unruled, tl.annotation_flags(atlas, transferred, np.ones(len(atlas)), CLASSES)[0])


def test_support_position_needs_confirmed_cells_ahead():
    """Where the confirmed transferred-label cells do not out-support the atlas label's (the support cannot tell the
    two apart), the position is missing and the group is kept; a support table of the wrong length is refused."""
    atlas, transferred, support = _atlas_with_two_one_way_groups()
    support[:, :2] = 0.0
    frame = pd.DataFrame(support, columns=CLASSES)
    groups = tl.confusion_groups(atlas.astype(str), transferred.astype(str), atlas != transferred,
                                 class_support=frame)
    assert groups["support_position"].isna().all()
    flags, _ = tl.annotation_flags(atlas, transferred, np.ones(len(atlas)), CLASSES, class_support=frame)
    assert flags[400:440].all()
    with pytest.raises(ValueError, match="class_support has 10 rows"):
        tl.annotation_flags(atlas, transferred, np.ones(len(atlas)), CLASSES, class_support=frame[:10])
