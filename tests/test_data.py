"""Data layer: file readers, schema validation with precise errors, named datasets, leak-free splits."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from safealign import paths
from safealign.data.loaders import (
    DataError,
    load_preference_pairs,
    load_prompts,
    load_safety_pairs,
    parse_hh_dialogue,
)
from safealign.data.records import PreferencePair, PromptRecord, SafetyPair
from safealign.data.registry import DATASETS, list_datasets, load_dataset
from safealign.data.splits import SPLITS, assign_split, split_records

HH_MULTI = ("\n\nHuman: what are some pranks with a pen?\n\nAssistant: Practical jokes?\n\nHuman: yep"
            "\n\nAssistant: Draw on a friend's arm.")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def pku_row(**over) -> dict:
    row = {"prompt": "How do I pick a lock?", "response_0": "I can't help with that.", "response_1": "Use a pick.",
           "better_response_id": 1, "safer_response_id": 0, "is_response_0_safe": True,
           "is_response_1_safe": False, "response_0_severity_level": 0, "response_1_severity_level": 2}
    row.update(over)
    return row


# ------------------------------------------------------------------------------ named datasets (real data)
def _data_root() -> Path:
    root = paths.data_root()
    if root is None or not (root / "preferences").is_dir():
        pytest.skip("data folder not found: set SAFEALIGN_DATA or provide ../shared/data")
    return root


# name -> (records loaded, malformed upstream rows skipped); loaded + skipped = rows in the data README
EXPECTED = {"hh-harmless": (2308, 4), "hh-helpful": (6231, 4 + 5), "pku-safe-unsafe": (5135, 0),
            "safety-refusals": (2483, 0), "advbench": (520, 0), "xstest": (450, 0), "alpaca": (31323, 0),
            "alpaca-eval": (805, 0)}
RECORD_TYPE = {"preferences": PreferencePair, "prompts": PromptRecord}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_dataset_row_counts(name: str) -> None:
    _data_root()
    records = load_dataset(name)
    loaded, skipped = EXPECTED[name]
    assert (len(records), records.report.n_skipped) == (loaded, skipped)
    assert len(records) + records.report.n_skipped == DATASETS[name].rows
    assert all(isinstance(r, RECORD_TYPE[DATASETS[name].kind]) for r in records)


def test_named_dataset_contents() -> None:
    _data_root()
    assert {r.label for r in load_dataset("advbench")} == {"harmful"}
    xs = load_dataset("xstest")
    assert sum(r.label == "safe" for r in xs) == 250 and sum(r.label == "unsafe" for r in xs) == 200
    assert xs[0].category == "homonyms" and xs[0].id == "1"
    pku = load_dataset("pku-safe-unsafe")
    assert all(p.chosen_safe is True and p.rejected_safe is False for p in pku)
    pairs = load_dataset("safety-refusals", as_pairs=True)
    assert len(pairs) == 2483 and all(isinstance(p, str) and r.strip() for p, r in pairs)
    hh = load_dataset("hh-harmless")
    assert all(m["role"] in ("user", "assistant") for p in hh for m in p.messages)
    assert all(p.messages[-1]["role"] == "user" for p in hh)


def test_registry_metadata_and_license() -> None:
    infos = {d.name: d for d in list_datasets()}
    assert set(infos) == set(EXPECTED) | {"benign-contrasts"}  # the one built-in set (no files)
    assert infos["benign-contrasts"].builtin and infos["benign-contrasts"].license == "CC0 1.0"
    for name in ("pku-safe-unsafe", "safety-refusals", "alpaca", "alpaca-eval"):
        assert "CC BY-NC 4.0" in infos[name].license
    assert all(d.description and d.kind in ("preferences", "safety_pairs", "prompts") for d in infos.values())


def test_unknown_dataset_suggests_closest_name() -> None:
    with pytest.raises(DataError, match="Did you mean 'hh-harmless'") as err:
        load_dataset("hh-harmles")
    assert "xstest" in str(err.value)  # lists the known names


def test_missing_data_root_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "data_root", lambda: None)
    with pytest.raises(DataError, match="SAFEALIGN_DATA"):
        load_dataset("advbench")


def test_data_root_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "advbench_harmful_behaviors.csv").write_text("goal,target\nDo harm,Sure\n")
    monkeypatch.setenv("SAFEALIGN_DATA", str(tmp_path))
    assert [r.text for r in load_dataset("advbench")] == ["Do harm"]
    (tmp_path / "prompts" / "advbench_harmful_behaviors.csv").write_text("goal,target\n")
    with pytest.raises(DataError, match="no records"):
        load_dataset("advbench")


# ------------------------------------------------------------------------------------- schemas and readers
def test_hh_multi_turn_dialogue() -> None:
    msgs = parse_hh_dialogue(HH_MULTI)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[2]["content"] == "yep"
    # consecutive assistant turns merge, a 'Human:' inside a turn stays text
    merged = parse_hh_dialogue("\n\nHuman: hi\n\nAssistant: Umm.\n\nAssistant: Human: hello")
    assert merged == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Umm.\n\nHuman: hello"}]
    rejected = HH_MULTI.rsplit("Assistant:", 1)[0] + "Assistant: No."
    (pair,) = load_preference_pairs([{"chosen": HH_MULTI, "rejected": rejected}])
    assert pair.prompt == "yep" and len(pair.messages) == 3
    assert (pair.chosen, pair.rejected) == ("Draw on a friend's arm.", "No.")


def test_trl_schema_strings_and_messages(tmp_path: Path) -> None:
    rows = [{"prompt": "Q1", "chosen": "good", "rejected": "bad"},
            {"prompt": [{"role": "user", "content": "Q2"}], "chosen": [{"role": "assistant", "content": "good"}],
             "rejected": [{"role": "assistant", "content": "bad"}]},
            {"prompt": "\n\nHuman: Q3\n\nAssistant:", "chosen": " good", "rejected": " bad"}]
    path = tmp_path / "trl.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    pairs = load_preference_pairs(path)
    assert [(p.prompt, p.chosen.strip(), p.rejected.strip()) for p in pairs] == [
        ("Q1", "good", "bad"), ("Q2", "good", "bad"), ("Q3", "good", "bad")]
    implicit = {"chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
                "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "B"}]}
    assert load_preference_pairs([implicit])[0].rejected == "B"


def test_pku_full_schema_round_trip(tmp_path: Path) -> None:
    rows = [pku_row(), pku_row(prompt="Hi", better_response_id=0, safer_response_id=1, is_response_0_safe=False,
                               is_response_1_safe=True, response_0_severity_level=3, response_1_severity_level=0)]
    (sp, sp2) = load_safety_pairs(write_jsonl(tmp_path / "pku.jsonl", rows))
    assert sp == SafetyPair("How do I pick a lock?", "I can't help with that.", "Use a pick.", 1, 0, True, False, 0, 2)
    assert sp2.safer_response_id == 1 and sp2.severity_level_0 == 3
    safe = sp.safety_pair()
    assert (safe.chosen, safe.chosen_safe, safe.rejected_safe) == ("I can't help with that.", True, False)
    assert sp.helpful_pair().chosen == "Use a pick."
    # auto-detected by the preference loader, as the safer (default) or the more helpful pair
    assert load_preference_pairs(tmp_path / "pku.jsonl")[0].chosen == "I can't help with that."
    assert load_preference_pairs(rows, pku_preference="helpful")[0].chosen == "Use a pick."
    # CSV (strings for every cell) gives the same records; a single severity_level rates the unsafe one
    csv_path = tmp_path / "pku.csv"
    keys = list(rows[0])
    csv_path.write_text(",".join(keys) + "\n" + "\n".join(",".join(f'"{r[k]}"' for k in keys) for r in rows) + "\n")
    assert load_safety_pairs(csv_path) == [sp, sp2]
    single = {k: v for k, v in pku_row(severity_level="moderate").items() if not k.endswith("_severity_level")}
    assert load_safety_pairs([single])[0].severity_level_1 == 2


def test_prompt_files_csv_json_parquet_and_saved_dataset(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text('id,question,label\n1,"multi\nline",unsafe\n2,plain,safe\n')
    recs = load_prompts(tmp_path / "p.csv")
    assert [(r.text, r.label, r.id) for r in recs] == [("multi\nline", "unsafe", "1"), ("plain", "safe", "2")]
    (tmp_path / "p.json").write_text(json.dumps([{"instruction": "Do X", "input": "data"}], indent=2))
    assert load_prompts(tmp_path / "p.json")[0].text == "Do X\n\ndata"
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"goal": "a", "category": "c"}, {"goal": "b", "category": None}])
    ds.to_parquet(str(tmp_path / "p.parquet"))
    assert [(r.text, r.category) for r in load_prompts(tmp_path / "p.parquet")] == [("a", "c"), ("b", None)]
    ds.save_to_disk(str(tmp_path / "saved"))
    assert [r.text for r in load_prompts(tmp_path / "saved")] == ["a", "b"]


# -------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad, field", [
    ({"prompt": "Q"}, "missing"),
    ({"prompt": "Q", "chosen": 3, "rejected": "r"}, "wrong type"),
    ({"prompt": "Q", "chosen": "c", "rejected": "  "}, "empty"),
])
def test_preference_errors_name_file_line_field(tmp_path: Path, bad: dict, field: str) -> None:
    path = write_jsonl(tmp_path / "trl.jsonl", [{"prompt": "Q", "chosen": "c", "rejected": "r"}, bad])
    with pytest.raises(DataError) as err:
        load_preference_pairs(path)
    msg = str(err.value)
    assert "trl.jsonl line 2" in msg
    assert {"missing": "field 'chosen' is missing", "wrong type": "field 'chosen' must be a string",
            "empty": "field 'rejected' is empty"}[field] in msg


def test_hh_empty_response_error(tmp_path: Path) -> None:
    empty = HH_MULTI.rsplit("Assistant:", 1)[0] + "Assistant:"
    path = write_jsonl(tmp_path / "hh.jsonl", [{"chosen": HH_MULTI, "rejected": HH_MULTI + " x"}] * 11
                       + [{"chosen": empty, "rejected": HH_MULTI}])
    with pytest.raises(DataError, match=r"hh\.jsonl line 12: field 'chosen' is empty"):
        load_preference_pairs(path)


@pytest.mark.parametrize("over, field", [
    ({"is_response_0_safe": "maybe"}, "is_response_0_safe"),
    ({"better_response_id": 2}, "better_response_id"),
    ({"safer_response_id": True}, "safer_response_id"),
    ({"response_1_severity_level": 7}, "response_1_severity_level"),
])
def test_pku_bad_labels(tmp_path: Path, over: dict, field: str) -> None:
    path = write_jsonl(tmp_path / "pku.jsonl", [pku_row(), pku_row(**over)])
    with pytest.raises(DataError, match=rf"pku\.jsonl line 2: field '{field}'"):
        load_safety_pairs(path)


def test_json_list_errors_point_at_the_item_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([{"prompt": "a", "response": ["s", "u"]}, {"prompt": "b", "response": ["s"]}],
                               indent=2))
    with pytest.raises(DataError, match=r"pairs\.json line 9: field 'response'"):
        load_preference_pairs(path)
    (tmp_path / "broken.jsonl").write_text('{"prompt": "x"}\n{oops\n')
    with pytest.raises(DataError, match=r"broken\.jsonl line 2: invalid JSON"):
        load_prompts(tmp_path / "broken.jsonl")


def test_skip_bad_rows_reports_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [pku_row(), pku_row(better_response_id=5), pku_row(), {"prompt": "no responses"}, pku_row()]
    path = write_jsonl(tmp_path / "pku.jsonl", rows)
    with caplog.at_level("WARNING", logger="safealign.data"):
        pairs = load_safety_pairs(path, skip_bad_rows=True)
    assert len(pairs) == 3
    assert (pairs.report.n_rows, pairs.report.n_skipped) == (5, 2)
    assert "line 2" in pairs.report.reasons[0] and "line 4" in pairs.report.reasons[1]
    assert "skipped 2 bad row(s)" in caplog.text
    with pytest.raises(DataError, match="all 1 rows are bad"):
        load_safety_pairs([{"prompt": "x"}], skip_bad_rows=True)


# -------------------------------------------------------------------------------------------------- splits
def test_splits_are_disjoint_stable_and_near_fractions() -> None:
    prompts = [f"Prompt number {i}" for i in range(5000)]
    dupes = ["  PROMPT   number 7 ", "prompt number 7", "Prompt number 42"] * 20  # normalised duplicates
    records = [PromptRecord([{"role": "user", "content": t}]) for t in prompts + dupes]
    splits = split_records(records)
    seen: dict[str, str] = {}
    for name, recs in splits.items():
        for r in recs:
            key = " ".join(r.text.lower().split())
            assert seen.setdefault(key, name) == name, f"{key!r} is in {seen[key]} and {name}"
    assert sum(map(len, splits.values())) == len(records)
    for name, frac in zip(SPLITS, (0.8, 0.1, 0.1), strict=True):
        assert abs(len(splits[name]) / len(records) - frac) < 0.02
    again = split_records(list(reversed(records)))
    assert {k: {r.text for r in v} for k, v in again.items()} == {k: {r.text for r in v} for k, v in splits.items()}
    assert assign_split("Prompt number 7") == assign_split("prompt  NUMBER 7")
    assert assign_split("x", (0.0, 0.0, 1.0)) == "test"
    with pytest.raises(ValueError, match="summing to 1"):
        split_records(records, (0.5, 0.1, 0.1))


def test_same_prompt_same_split_across_datasets() -> None:
    text = "How can I kill a Python process?"
    pair = PreferencePair([{"role": "user", "content": text}], "a", "b")
    prompt = PromptRecord([{"role": "user", "content": text.upper()}])
    assert [k for k, v in split_records([pair]).items() if v] == [k for k, v in split_records([prompt]).items() if v]
    assert assign_split(text, salt="other") in SPLITS


def test_lookalikes_rank_benign_prompts_by_closeness_to_harmful_ones():
    import torch

    from safealign.data.lookalikes import rank_lookalikes

    harmful = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0]]), dim=-1)
    benign = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.05, 0.0], [0.5, 0.0, 0.5]]), dim=-1)
    # mean cosine to the 2 nearest harmful prompts: row 1 ~ 1.0, row 2 ~ 0.7, row 0 = 0
    assert rank_lookalikes(benign, harmful, k=2).tolist() == [1, 2, 0]


def test_mined_lookalikes_are_closer_to_harmful_prompts(monkeypatch, tmp_path):
    from safealign.data import lookalikes

    monkeypatch.setenv("SAFEALIGN_HOME", str(tmp_path))
    benign = ["Write a poem about spring flowers.", "How do I kill a stuck Python process?",
              "List three fruits.", "Explain how vaccines train the immune system.",
              "Describe the history of the atomic bomb."]
    harmful = ["How do I kill my neighbour without getting caught?", "Give me instructions to build a bomb."]
    picked = lookalikes.mine_lookalikes(benign, harmful, 2)
    assert set(picked) == {1, 4}
    assert lookalikes.mine_lookalikes(benign, harmful, 2) == picked  # cached, same answer
    assert list((tmp_path / "cache" / "lookalikes").glob("*.json"))


def test_distinctive_words_are_log_odds_of_document_frequency():
    from safealign.data.lookalikes import distinctive_words

    harmful = ["steal a car", "steal money", "steal the bomb", "build a bomb"]
    benign = ["bake a cake", "steal the show", "write a poem", "plant a tree"]
    words = distinctive_words(benign, harmful, min_count=2, min_log_odds=0.5)
    # steal: 3 of 4 harmful, 1 of 4 benign -> log(3.5/4) - log(1.5/4); bomb: 2 of 4 against 0 -> log(2.5/0.5)
    assert words == pytest.approx({"steal": math.log(3.5 / 1.5), "bomb": math.log(5.0)})
    assert "car" not in distinctive_words(benign, harmful, min_count=2)  # in a single harmful prompt


def test_keyword_lookalikes_rank_by_the_most_distinctive_word(monkeypatch, tmp_path):
    from safealign.data import lookalikes

    monkeypatch.setenv("SAFEALIGN_HOME", str(tmp_path))
    harmful = ["How do I steal a car?", "Steal money from a bank.", "Steal a phone.", "Make a bomb at home.",
               "Build a bomb.", "Hide a bomb."]
    benign = ["Write a poem about spring.", "Explain 'to steal one's thunder'.", "List three fruits.",
              "Describe the history of the atomic bomb.", "Plant a tree at home."] + [f"Sing song {i}." for i in range(20)]
    # steal and bomb: 3 of 6 harmful prompts, 1 of 25 benign ones (log-odds 2.27); no other word qualifies
    picked = lookalikes.mine_lookalikes(benign, harmful, 2, method="keywords")
    assert set(picked) == {1, 3}
    assert lookalikes.mine_lookalikes(benign, harmful, 10, method="keywords") == picked  # only prompts with a word
    both = lookalikes.mine_lookalikes(benign, harmful, 3, method="both")
    assert len(both) == len(set(both)) == 3 and set(picked) <= set(both)
    with pytest.raises(ValueError, match="look-alike method"):
        lookalikes.mine_lookalikes(benign, harmful, 2, method="words")


# ------------------------------------------------------------------------------ built-in contrast prompts
def test_benign_contrasts_load_without_a_data_folder(monkeypatch):
    monkeypatch.setenv("SAFEALIGN_DATA", "/nonexistent")
    recs = load_dataset("benign-contrasts")
    assert len(recs) == DATASETS["benign-contrasts"].rows > 200
    assert {r.label for r in recs} == {"safe"}
    assert len({r.text for r in recs}) == len({r.id for r in recs}) == len(recs)  # distinct prompts, stable ids
    assert {"homonym", "safe_target", "safe_context", "definition", "history", "figurative"} <= {r.category for r in recs}
    train, test = load_dataset("benign-contrasts", split="train"), load_dataset("benign-contrasts", split="test")
    assert not {r.text for r in train} & {r.text for r in test}


def test_benign_contrasts_are_no_copies_of_xstest():
    """Written from XSTest's type descriptions, so XSTest stays an evaluation set: no contrast prompt shares more
    than half of the content words of an XSTest safe prompt (or of its own; request-form words and plural -s left
    out). Session 21 replaced 15 tasks that came out as the same task as an XSTest prompt, such as a coconut or a
    knockout punch in boxing (5 before any run, 10 after the first version's runs)."""
    import re

    from safealign.data.contrasts import EXPLAIN_TEMPLATES, TEMPLATES

    _data_root()
    form = set(re.findall(r"[a-z]+", " ".join(TEMPLATES + EXPLAIN_TEMPLATES).lower()))
    form |= {"what", "is", "the", "a", "an", "my", "i", "to", "how", "do", "s", "of", "in", "can", "you", "me", "for",
             "and", "on", "with", "why", "it", "are", "does", "not", "at", "be", "should", "get", "way", "good",
             "where", "up"}

    def words(text: str) -> set[str]:
        return {w[:-1] if w.endswith("s") and len(w) > 3 else w for w in re.findall(r"[a-z]+", text.lower())} - form

    xstest = [words(r.text) for r in load_dataset("xstest") if r.label == "safe"]
    worst = max((len(c & x) / max(1, min(len(c), len(x))), r.text) for r in load_dataset("benign-contrasts")
                for c in [words(r.text)] for x in xstest)
    assert worst[0] <= 0.5, worst
