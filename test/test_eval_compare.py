"""benchmarks/eval_compare.py: the paired room-by-room comparison the networks' records are
read with, from plain and gzipped `gs4 train eval --json` files."""
import gzip
import json

import pytest
from conftest import load_script

eval_compare = load_script("benchmarks/eval_compare.py")


def _rows(mious, psnr, l1=None):
    rows = [{"source": f"synthetic:{900 + i}", "variant": "+pruning", "miou": m, "heldout_psnr": psnr,
             "num_gaussians": 5000, **({"heldout_depth_l1_cm": l1[i]} if l1 else {})}
            for i, m in enumerate(mious)]
    return rows + [{"source": "synthetic:mean(3 seeds)", "variant": "+pruning", "miou": 0.0,
                    "heldout_psnr": 0.0, "num_gaussians": 0}]      # the mean row, which is skipped


def test_gzipped_record_compares_room_by_room(tmp_path, capsys):
    ref = tmp_path / "shipped.json.gz"
    with gzip.open(ref, "wt") as f:
        json.dump(_rows([0.60, 0.70, 0.80], 26.0, [2.0, 3.0, 4.0]), f)
    new = tmp_path / "fresh.json"
    # Room 902 is missing from the new file: the rows are over the two rooms both hold.
    new.write_text(json.dumps(_rows([0.65, 0.60], 26.5, [2.5, 3.3])))
    eval_compare.main([f"shipped={ref}", f"fresh={new}"])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| +pruning")]
    assert len(lines) == 2
    shipped, fresh = (ln.split("|") for ln in lines)
    assert shipped[3].strip() == "2" and shipped[4].strip() == "65.0"
    assert fresh[4].strip() == "62.5"
    # +5 and -10 points: mean -2.5, one room better, one worse; PSNR +0.5 dB.
    assert shipped[8].strip() == "2.50" and fresh[8].strip() == "2.90"
    assert fresh[10].strip().startswith("-2.5 (± 7.5) over 2, 1 / 1")
    assert fresh[11].strip() == "+0.50"
    # Depth 0.5 and 0.3 cm higher room by room: mean +0.40, s.e. 0.10, none lower, two higher.
    assert fresh[12].strip() == "+0.40 (± 0.10), 0 / 2"


def test_records_without_depth_still_compare(tmp_path, capsys):
    """Older records kept in the repository may lack a field; the row says '-' for it."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_rows([0.6, 0.7], 26.0)))
    b.write_text(json.dumps(_rows([0.6, 0.8], 26.0)))
    eval_compare.main([f"a={a}", f"b={b}"])
    fresh = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| +pruning | b")][0].split("|")
    assert fresh[8].strip() == "-" and fresh[12].strip() == "-"
    assert fresh[10].strip().startswith("+5.0")


def test_a_room_without_held_out_depth_is_left_out_of_the_depth_columns(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_rows([0.6, 0.7], 26.0, [2.0, 3.0])))
    b.write_text(json.dumps(_rows([0.6, 0.7], 26.0, [2.5, float("nan")])))
    eval_compare.main([f"a={a}", f"b={b}"])
    fresh = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| +pruning | b")][0].split("|")
    assert fresh[8].strip() == "2.50"
    assert fresh[12].strip() == "+0.50 (± nan), 0 / 1"


def test_a_spec_without_a_name_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        eval_compare.load(str(tmp_path / "a.json"))
