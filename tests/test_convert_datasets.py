"""The shipped datasets/dataset_info.json: the host reads every entry, and converting into it changes nothing else."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import REPO

from llava_lf.data.convert import convert_file
from llava_lf.data.convert.records import dataset_info_entry

pytestmark = pytest.mark.host

SHIPPED = REPO / "datasets" / "dataset_info.json"
PUBLIC = ("llava_pretrain_558k", "llava_instruct_150k", "llava_v1_5_mix665k", "scienceqa_llava_train")


def test_host_reads_every_shipped_entry_as_llava_sharegpt():
    from llamafactory.data.parser import get_dataset_list

    info = json.loads(SHIPPED.read_text())
    assert {"shapes_caption", "shapes_instruct", *PUBLIC} <= set(info)
    for name, attr in zip(info, get_dataset_list(list(info), str(SHIPPED.parent))):
        assert (attr.load_from, attr.dataset_name, attr.formatting) == ("file", f"{name}.jsonl", "sharegpt")
        assert (attr.messages, attr.images) == ("conversations", "images")
        assert (attr.role_tag, attr.user_tag, attr.assistant_tag, attr.system_tag) == ("from", "human", "gpt", "system")


def test_converting_into_the_shipped_folder_leaves_its_registrations_byte_identical(tmp_path, demo_data):
    data, _ = demo_data
    folder = tmp_path / "datasets"
    shutil.copytree(SHIPPED.parent, folder)
    before = (folder / "dataset_info.json").read_bytes()
    report = convert_file(data.instruct_json, data.image_dir, folder, "shapes_instruct")
    assert report.written > 0 and report.rejected == 0
    assert (folder / "dataset_info.json").read_bytes() == before
    for name, entry in json.loads(before).items():
        assert entry == dataset_info_entry(f"{name}.jsonl"), name
