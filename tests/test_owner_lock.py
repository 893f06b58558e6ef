"""Leftovers told by a held `flock`: a held file or folder is kept, one whose lock is free is removed."""

from __future__ import annotations

import os

from llava_lf.common.owner_lock import FOLDER_LOCK, abandoned, create_held, held_folder, remove_abandoned_folders


def test_a_held_file_is_not_abandoned_until_its_owner_closes_it(tmp_path):
    path = tmp_path / "work"
    fd = create_held(path)
    assert fd is not None
    with abandoned(path) as gone:  # a second open, even in this process, is refused the lock
        assert not gone
    os.close(fd)  # what the OS does when the owner dies
    with abandoned(path) as gone:
        assert gone
        assert create_held(tmp_path / "other") is not None  # others are not blocked meanwhile


def test_missing_files_folders_and_links_are_never_abandoned(tmp_path):
    target = tmp_path / "target"
    target.write_text("x")
    (tmp_path / "link").symlink_to(target)
    for path in (tmp_path / "missing", tmp_path, tmp_path / "link"):
        with abandoned(path) as gone:
            assert not gone


def test_only_folders_whose_lock_is_free_are_removed(tmp_path):
    dead = tmp_path / "run-dead"
    dead.mkdir()
    (dead / FOLDER_LOCK).write_text("")  # its owner died: nobody holds the lock
    (dead / "spilled").write_text("data")
    unlocked = tmp_path / "run-being-made"
    unlocked.mkdir()  # no lock file yet: a folder in the instant before its owner locks it
    with held_folder(tmp_path, "run-") as alive:
        assert remove_abandoned_folders(tmp_path, "run-") == [dead]
        assert alive.is_dir() and unlocked.is_dir() and not dead.exists()
    assert not alive.exists()  # removed by its owner at the end
