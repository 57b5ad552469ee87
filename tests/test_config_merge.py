"""input.yml three-way merge rules (bgit.config.merge), on texts as users write them."""

from __future__ import annotations

import textwrap

import yaml

from bgit.config import parse_config
from bgit.config.merge import conflict_marker_line, merge_config_text, merge_sequences

BASE = textwrap.dedent("""\
    # shared settings
    MODEL:
      base: smollm2-135m
    PROMPT:
      teacher:
        messages:
          - {role: system, content: Be kind.}
    TARGET:
      name: kind
      generators:
        - type: hardcoded
          stims: [hello, why]
    BAKE:
      name: kind
      epochs: 2
    """)


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def test_one_side_changes_keep_the_text_and_its_comments():
    ours = edit(BASE, "# shared settings\n", "# shared settings (ours)\n")
    theirs = edit(BASE, "epochs: 2", "epochs: 4")
    merged = merge_config_text(BASE, ours, theirs)
    assert merged.clean
    assert merged.text == edit(ours, "epochs: 2", "epochs: 4")  # a clean line merge keeps both edits


def test_targets_of_both_sides_are_kept_and_datasets_follow():
    target = "TARGET:\n  name: kind\n  generators:\n    - type: hardcoded\n      stims: [hello, why]\n"
    ours = edit(BASE, target, textwrap.dedent("""\
        TARGETS:
          - name: kind
            generators:
              - type: hardcoded
                stims: [hello, why]
          - name: loud
            generators:
              - {type: hardcoded, stims: [hey]}
        """))
    ours = edit(ours, "BAKE:\n  name: kind", "BAKE:\n  name: kind-and-loud")
    theirs = edit(BASE, "BAKE:\n  name: kind\n", "BAKE:\n  name: terse\n  datasets:\n    - {target: kind, weight: 2}\n")
    theirs = edit(theirs, target, target.replace("name: kind", "name: kind\n  max_tokens: 32"))
    merged = merge_config_text(BASE, ours, theirs)
    assert merged.clean, merged.conflicts
    data = yaml.safe_load(merged.text)
    assert [t["name"] for t in data["TARGETS"]] == ["kind", "loud"]
    assert data["TARGETS"][0]["max_tokens"] == 32            # theirs' change inside ours' target
    assert data["BAKE"]["name"] == "kind-and-loud"            # BAKE.name: ours, never a conflict
    # theirs listed datasets; ours (none listed: all its targets) counts as [kind, loud] at weight 1
    assert data["BAKE"]["datasets"] == [{"target": "kind", "weight": 2}, {"target": "loud", "weight": 1.0}]
    config = parse_config(merged.text)
    assert [d.target for d in config.bake.datasets] == ["kind", "loud"]


def test_single_targets_with_different_names_become_targets():
    ours = edit(BASE, "name: kind\n  generators", "name: a\n  generators")
    theirs = edit(BASE, "name: kind\n  generators", "name: b\n  generators")
    data = yaml.safe_load(merge_config_text(BASE, ours, theirs).text)
    assert "TARGET" not in data and [t["name"] for t in data["TARGETS"]] == ["a", "b"]
    same = merge_config_text(BASE, edit(BASE, "epochs: 2", "epochs: 3"), BASE)
    assert "TARGET" in yaml.safe_load(same.text)             # one target stays a TARGET


def test_lists_merge_like_lines_and_conflict_as_a_whole():
    assert merge_sequences(["a", "b"], ["a", "b", "c"], ["a", "b", "d"]) == ["a", "b", "c", "d"]
    assert merge_sequences(["a", "b", "c"], ["a", "c"], ["a", "b", "c", "d"]) == ["a", "c", "d"]
    assert merge_sequences(["a", "b", "c"], ["a", "x", "c"], ["a", "y", "c"]) is None
    ours = edit(BASE, "stims: [hello, why]", "stims: [hello, why, ours]")
    theirs = edit(BASE, "stims: [hello, why]", "stims: [hello, why, theirs]")
    data = yaml.safe_load(merge_config_text(BASE, ours, theirs).text)
    assert data["TARGET"]["generators"][0]["stims"] == ["hello", "why", "ours", "theirs"]


def test_conflicts_are_written_with_git_markers_around_the_key():
    ours = edit(edit(BASE, "epochs: 2", "epochs: 3"), "content: Be kind.", "content: Be kind (ours).")
    theirs = edit(edit(BASE, "epochs: 2", "epochs: 5"), "content: Be kind.", "content: Be kind (theirs).")
    merged = merge_config_text(BASE, ours, theirs, labels=("HEAD", "feature"))
    assert merged.conflicts == ["PROMPT.teacher.messages", "BAKE.epochs"]
    assert "BAKE:\n  name: kind\n<<<<<<< HEAD\n  epochs: 3\n=======\n  epochs: 5\n>>>>>>> feature\n" in merged.text
    assert conflict_marker_line(merged.text) == merged.text.splitlines().index("<<<<<<< HEAD") + 1
    resolved = "\n".join(line for line in merged.text.splitlines()
                         if not line.startswith(("<<<<<<<", ">>>>>>>")) and line != "=======")
    assert conflict_marker_line(resolved) is None
    deleted = merge_config_text(BASE, edit(BASE, "  epochs: 2\n", ""), edit(BASE, "epochs: 2", "epochs: 9"))
    assert deleted.conflicts == ["BAKE.epochs"]
    assert "<<<<<<< HEAD\n=======\n  epochs: 9\n>>>>>>> theirs\n" in deleted.text  # deleted on ours
