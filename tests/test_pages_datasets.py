"""The Data page's "My datasets" manager through Streamlit's AppTest: create, upload, import, fix, delete."""

import io
import tomllib
import zipfile
from pathlib import Path

from PIL import Image
from streamlit.testing.v1 import AppTest

from core import datasets

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
MINE = "My datasets (made here)"


def png(shade: int, size: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (shade, 255 - shade, (shade * 7) % 256)).save(buffer, "PNG")
    return buffer.getvalue()


def open_mine() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("app_pages/data.py").run()
    at.radio(key="data_source").set_value(MINE).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def button(at: AppTest, label: str):
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r} among {[b.label for b in at.button]}"
    return found[0]


def shown(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "success", "warning", "info", "error", "caption") for e in at.get(kind)]
    return "\n".join(parts)


def files_of(home: Path, dataset: str) -> dict[str, list[str]]:
    folder = home / "datasets" / "local" / dataset
    return {c.name: sorted(p.name for p in c.iterdir()) for c in sorted(folder.iterdir()) if not c.name.startswith(".")}


def made(name: str, classes: dict[str, int]) -> list[str]:
    """A dataset made through core, ``classes`` -> how many distinct images; returns the refs."""
    datasets.create_dataset(name, list(classes))
    refs, shade = [], 0
    for class_name, count in classes.items():
        files = []
        for _ in range(count):
            files.append((f"{class_name}{shade}.png", png(shade)))
            shade += 9
        refs += datasets.add_images(name, class_name, files).added
    return refs


def test_create_a_dataset_upload_to_two_classes_and_see_the_counts(transfer_lab_home):
    at = open_mine()
    assert "Create a dataset" in [h.value for h in at.subheader]
    at.text_input(key="data_create_name").input("pets")
    at.text_area(key="data_create_classes").input("cat, dog\nfox")
    button(at, "Create").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert files_of(transfer_lab_home, "pets") == {"cat": [], "dog": [], "fox": []}
    assert at.selectbox(key="data_local_name").value == "pets"  # the new dataset is chosen...
    assert at.session_state["shared.data_config"].source == "local:pets"  # ...and is the other pages' data
    assert "Created 'pets' with 3 classes" in shown(at)

    at.selectbox(key="data_add_class").set_value("cat").run()
    at.file_uploader(key="data_photos_0").set_value([(f"c{i}.png", png(10 * i), "image/png") for i in range(3)]).run()
    button(at, "Add 3 photos to 'cat'").click().run()
    assert not at.exception
    assert "Added 3 images to 'cat'." in [s.value for s in at.success]
    at.selectbox(key="data_add_class").set_value("dog").run()
    at.file_uploader(key="data_photos_1").set_value(  # a fresh uploader: the first one was emptied
        [("d1.png", png(200), "image/png"), ("d2.png", png(220), "image/png")]
    ).run()
    button(at, "Add 2 photos to 'dog'").click().run()
    assert not at.exception

    on_disk = files_of(transfer_lab_home, "pets")
    assert (len(on_disk["cat"]), len(on_disk["dog"]), on_disk["fox"]) == (3, 2, [])
    text = shown(at)
    assert "**cat** · 3 images" in text and "**dog** · 2 images" in text and "**fox** · 0 images" in text
    assert {m.label: m.value for m in at.metric}["Images"] == "5"
    assert at.selectbox(key="data_local_name").format_func("pets") == "pets (5 images)"


def test_a_zip_with_good_broken_and_climbing_entries_adds_only_the_good_ones(transfer_lab_home, tmp_path):
    datasets.create_dataset("zips", [])
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("beagle/one.png", png(1))
        z.writestr("beagle/two.png", png(2))
        z.writestr("samoyed/three.png", png(3))
        z.writestr("samoyed/broken.jpg", b"\xff\xd8\xff not really a jpeg")
        z.writestr("../evil.png", png(4))
    made("another", {"x": 1})  # listed first: the page must keep the dataset chosen through the import
    at = open_mine()
    at.selectbox(key="data_local_name").set_value("zips").run()
    at.file_uploader(key="data_zip_0").set_value(("photos.zip", archive.getvalue(), "application/zip")).run()
    button(at, "Import").click().run()
    assert not at.exception

    warning = " ".join(w.value for w in at.warning)
    assert "Added 3 images to 2 classes" in warning and "2 files were not added" in warning
    assert "broken.jpg" in warning and "../evil.png" in warning.replace("\\", "")
    table = at.dataframe[0].value
    assert sorted(table["File"]) == ["../evil.png", "samoyed/broken.jpg"]
    assert any("climbs out" in why for why in table["Why it was not added"])
    on_disk = files_of(transfer_lab_home, "zips")
    assert sorted(on_disk) == ["beagle", "samoyed"] and (len(on_disk["beagle"]), len(on_disk["samoyed"])) == (2, 1)
    assert not list(transfer_lab_home.rglob("evil.png")) and not list(tmp_path.rglob("evil.png"))
    assert not list(transfer_lab_home.rglob("broken.jpg"))
    assert at.selectbox(key="data_local_name").value == "zips"
    assert at.selectbox(key="data_local_name").format_func("zips") == "zips (3 images)"


def test_bad_names_are_sentences_and_nothing_is_made(transfer_lab_home):
    at = open_mine()
    at.text_input(key="data_create_name").input("dogs")
    at.text_area(key="data_create_classes").input("beagle\n../up")
    button(at, "Create").click().run()
    assert not at.exception
    assert "The class name '../up' contains a slash" in at.error[0].value.replace("\\", "")
    assert not (transfer_lab_home / "datasets" / "local" / "dogs").exists()

    at.text_area(key="data_create_classes").input("Beagle, beagle")
    button(at, "Create").click().run()
    assert "are the same name" in at.error[0].value
    at.text_area(key="data_create_classes").input("beagle")
    button(at, "Create").click().run()
    assert not at.error and files_of(transfer_lab_home, "dogs") == {"beagle": []}

    at.text_input(key="data_new_class").input("train")  # a layout word cannot be a class
    button(at, "Add class").click().run()
    assert "means a split" in at.error[0].value and files_of(transfer_lab_home, "dogs") == {"beagle": []}


def test_delete_a_class_and_the_dataset_only_once_confirmed(transfer_lab_home):
    made("shelter", {"cat": 2, "dog": 3})
    made("other", {"a": 1})
    at = open_mine()
    at.selectbox(key="data_local_name").set_value("shelter").run()
    at.selectbox(key="data_delete_class").set_value("dog").run()
    assert at.button(key="data_delete_class_go").disabled
    at.checkbox(key="data_delete_class_ok").check().run()
    assert at.checkbox(key="data_delete_class_ok").label == "Yes, delete 'dog' and its 3 images"
    at.button(key="data_delete_class_go").click().run()
    assert not at.exception and sorted(files_of(transfer_lab_home, "shelter")) == ["cat"]
    assert "Deleted the class 'dog'." in shown(at)

    assert at.button(key="data_delete_dataset").disabled
    at.checkbox(key="data_delete_dataset_ok").check().run()
    assert at.checkbox(key="data_delete_dataset_ok").label == "Yes, delete 'shelter' and its 2 images"
    at.button(key="data_delete_dataset").click().run()
    assert not at.exception
    assert not (transfer_lab_home / "datasets" / "local" / "shelter").exists()
    assert at.selectbox(key="data_local_name").value == "other"
    assert "Deleted the dataset 'shelter'." in shown(at)


def test_rename_relabel_remove_and_restore_from_the_trash(transfer_lab_home):
    refs = made("yard", {"cat": 2, "dog": 2})
    at = open_mine()
    at.session_state["data_all_open_cat"] = True  # open "All 2 images" (rendered only when open)
    at.run()
    first, second = refs[0], refs[1]
    at.selectbox(key=f"data_fix_{first}_label").set_value("dog").run()  # relabel: moved at once
    assert not at.exception
    assert first.split("/")[1] in files_of(transfer_lab_home, "yard")["dog"]
    at.button(key=f"data_fix_{second}_remove").click().run()
    folder = transfer_lab_home / "datasets" / "local" / "yard"
    assert files_of(transfer_lab_home, "yard")["cat"] == [] and (folder / ".trash" / second).is_file()
    assert "**cat** · 0 images" in shown(at)

    at.button(key=f"data_trash_restore_{second}").click().run()
    assert not at.exception
    assert (folder / second).is_file() and not (folder / ".trash" / second).exists()
    assert "**cat** · 1 image" in shown(at)

    at.selectbox(key="data_rename_class").set_value("dog").run()
    at.text_input(key="data_rename_to").input("puppy").run()
    at.button(key="data_rename").click().run()
    assert not at.exception and sorted(files_of(transfer_lab_home, "yard")) == ["cat", "puppy"]
    assert len(files_of(transfer_lab_home, "yard")["puppy"]) == 3


def test_a_dataset_not_ready_to_train_says_why_and_stays_usable(transfer_lab_home):
    made("tiny", {"only": 1})
    at = open_mine()
    assert not at.exception and not at.error
    assert any("at least two" in i.value for i in at.info)  # describe refused it: a sentence, not a crash
    assert any("only one class" in w.value for w in at.warning)
    assert at.button(key="data_rename") is not None and "Add images" in [h.value for h in at.subheader]
    assert at.session_state["shared.data_config"].source == "local:tiny"


def test_the_sample_grid_follows_changes_to_the_dataset(transfer_lab_home):
    made("grid", {"a": 5, "b": 5})
    at = open_mine()
    assert {m.label: m.value for m in at.metric}["Training images"] == "8"
    datasets.add_images("grid", "a", [(f"n{i}.png", png(100 + i)) for i in range(5)])
    at.run()  # the describe cache is keyed by the data fingerprint: no stale counts
    assert {m.label: m.value for m in at.metric}["Training images"] == "12"


def test_uploads_allow_a_zip_of_a_few_thousand_photos():
    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["maxUploadSize"] >= 500  # MB: a few thousand phone-sized photos, zipped
