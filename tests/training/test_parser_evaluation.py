import numpy as np

from fashion_search.garments import Garment, GarmentDetector
from fashion_search.garments.taxonomy import GARMENT_CLASSES, ccp_lookup_table, class_index
from fashion_search.training.datasets import ccp_names, load_ccp_photo
from fashion_search.training.parser.evaluate import evaluate_product_shots, evaluate_segmentation, segmentation_ceiling

PHOTOS = [701, 702, 703]


class _TruthDetector(GarmentDetector):
    """Returns each photo's labelled garments, one per class, at full resolution."""

    name = "truth"

    def __init__(self, ccp_root):
        self.ccp_root, self.table, self.ids = ccp_root, ccp_lookup_table(ccp_names(ccp_root)), iter(PHOTOS)

    def detect(self, image):
        truth = np.asarray(load_ccp_photo(self.ccp_root, next(self.ids), self.table)[1])
        return [
            Garment(label=c, score=1.0, box=(0, 0, 1, 1), mask=truth == class_index(c))
            for c in GARMENT_CLASSES
            if (truth == class_index(c)).any()
        ]


def test_a_detector_that_returns_the_labelled_garments_scores_perfectly(shared_data):
    report = evaluate_segmentation(_TruthDetector(shared_data / "ccp"), shared_data / "ccp", PHOTOS)
    assert report.photos == 3 and report.box_counts
    assert report.mean_iou == 1.0
    assert set(report.box_recall.values()) == {1.0}


class _RenamingDetector(_TruthDetector):
    """The labelled garments with every footwear region called a bag."""

    def detect(self, image):
        return [
            Garment(label="bag" if g.label == "footwear" else g.label, score=1.0, box=g.box, mask=g.mask)
            for g in super().detect(image)
        ]


def test_confusions_give_the_share_of_a_predicted_class_that_is_truly_another(shared_data):
    truth = evaluate_segmentation(_TruthDetector(shared_data / "ccp"), shared_data / "ccp", PHOTOS)
    renamed = evaluate_segmentation(_RenamingDetector(shared_data / "ccp"), shared_data / "ccp", PHOTOS)
    assert truth.confusions == {}
    assert set(renamed.confusions) == {"bag"} and 0.0 < renamed.confusions["bag"]["footwear"] <= 1.0
    assert renamed.to_dict()["confusions"] == renamed.confusions


def test_the_ceiling_reads_the_labels_off_the_parsers_canvas(shared_data):
    report = segmentation_ceiling(shared_data / "ccp", PHOTOS)
    # Shrinking to 448x288 and back costs only pixels along the borders; a misplaced letterbox
    # or mask would cost whole garments.
    assert 0.85 < report.mean_iou < 1.0
    assert report.box_recall["footwear"] > 0.5


def test_the_ceiling_applies_the_extractions_rules(shared_data):
    report = segmentation_ceiling(shared_data / "ccp", PHOTOS, max_garments=0)
    assert report.box_counts and set(report.box_recall.values()) == {0.0}


class _NothingDetector(GarmentDetector):
    name = "nothing"

    def detect(self, image):
        return []


def test_product_shots_where_nothing_is_found_count_as_missed_in_every_group(shared_data):
    report = evaluate_product_shots(_NothingDetector(), shared_data / "kaggle", per_class=1)
    assert len(report.photos) == len(report.per_class) > 5
    assert report.groups["all"]["photos"] == len(report.photos)
    assert report.groups["all"]["nothing_found"] == 1.0 and report.groups["all"]["right_class_found"] == 0.0
    assert set(report.to_dict()) == {"groups", "exactly_one_right_per_class"}
