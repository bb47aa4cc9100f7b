"""Mutation check: do the tests catch small deliberate bugs? Run it before a release.

    .venv/bin/python scripts/mutants.py                 # every mutant
    .venv/bin/python scripts/mutants.py --only undo-typed-name fsync-dropped
    .venv/bin/python scripts/mutants.py --list

Each named mutant in :data:`MUTANTS` replaces one exact snippet of the package (the
first of its alternatives that occurs exactly once in its file: code that moved between
modules keeps being found) and names the tests that must then fail. The check works on
a copy of the working tree (the files ``git ls-files --cached --others
--exclude-standard`` lists) in a temporary folder outside the checkout, so the working
tree is never modified, and tests that look for ``../shared/data`` find none there and
use the generated fallback set (``tests/fallback_data.py``). ``PYTHONPATH`` points at the
copy, for the subprocesses the tests start too.

First the union of all mutants' tests runs on the unmodified copy (the baseline; when it
fails the check stops: a kill would mean nothing). Then per mutant one pytest run
(``-x``), reported as

* ``killed`` — its tests failed (or ran past ``--timeout``),
* ``survived`` — its tests passed: a bug the suite lets through,
* ``stale`` — none of its snippets is in the code any more: update the mutant,
* ``skipped`` — it needs CUDA and this machine has none,
* ``error`` — pytest itself failed (a usage or collection error): fix the mutant's tests.

The score is killed / (killed + survived + stale + error); skipped mutants are left out. Exit
status 0 only when every mutant that ran was killed and none is stale.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    """A deliberate bug: ``edits`` are alternative (file, exact old text, new text)."""

    name: str
    description: str
    edits: tuple[tuple[str, str, str], ...]
    tests: tuple[str, ...]
    needs_cuda: bool = False


MUTANTS: tuple[Mutant, ...] = (
    # ---- the five an earlier mutation round already caught
    Mutant("escape-off", "formula cells are no longer neutralised with a leading quote",
           (("inkapp/store/corrections.py", "return \"'\" + value if _formula_like(value) else value",
             "return value"),
            ("inkapp/store/corrections.py", "return \"'\" + value if _NEEDS_QUOTE.match(value) else value",
             "return value")),
           ("tests/test_corrections.py::test_formula_injection_neutralised_and_round_trips",)),
    Mutant("undo-oldest", "undo revokes the expert's oldest correction instead of the latest",
           (("inkapp/store/corrections.py", "for r in reversed(rows) if r[\"corrected_label\"]",
             "for r in rows if r[\"corrected_label\"]"),),
           ("tests/test_corrections.py::test_revoke_twice_falls_back", "tests/test_access.py")),
    Mutant("class-order", "probabilities are paired with the classes in reverse order",
           (("inkapp/inference.py", "zip(self.classes, probs)", "zip(self.classes[::-1], probs)"),),
           ("tests/test_explain.py", "tests/test_ui_analysis.py")),
    Mutant("promote-not-active", "promote copies the candidate but never makes it active",
           (("inkapp/store/versions.py",
             "    atomic_write_text(root / ACTIVE_FILE, json.dumps(record, indent=1))\n"
             "    _record_history(root, \"promote\"",
             "    _record_history(root, \"promote\""),),
           ("tests/test_ui_models.py::test_promote_keeps_versions_and_reloads_the_hub",)),
    Mutant("discard-keeps", "discard reports success but leaves the candidate folder",
           (("inkapp/store/versions.py",
             "    path = checked_candidate(data_dir, task, candidate)\n    shutil.rmtree(path)\n",
             "    path = checked_candidate(data_dir, task, candidate)\n"),),
           ("tests/test_ui_models.py::test_promote_refuses_unfinished_or_foreign_folders",)),
    # ---- issue 19's table, one per row
    Mutant("retrain-no-corrections", "the app's retraining command omits --corrections",
           (("inkapp/curation/retrain.py", "cmd += [\"--corrections\", str(corrections_csv)]", "cmd += []"),),
           ("tests/test_retrain_data.py",)),
    Mutant("train-cli-no-corrections", "`inkapp train` passes no corrections file to training",
           (("inkapp/cli.py", "run(cfg, out, corrections=args.corrections,", "run(cfg, out, corrections=None,"),),
           ("tests/test_retrain_data.py::test_inkapp_train_merges_the_corrections",)),
    Mutant("undo-typed-name", "undo revokes under the typed expert name, not the authorised one",
           (("inkapp/curation/actions.py", "row = self.store.revoke_last(task, expert)",
             "row = self.store.revoke_last(task, who.expert)"),),
           ("tests/test_access.py::test_undo_under_hf_sign_in_revokes_the_signed_in_experts_correction",)),
    Mutant("fsync-dropped", "the corrections append no longer fsyncs",
           (("inkapp/store/files.py", "            write_all(fd, data)\n            os.fsync(fd)\n",
             "            write_all(fd, data)\n"),
            ("inkapp/store/appendfile.py", "            write_all(fd, data)\n            os.fsync(fd)\n",
             "            write_all(fd, data)\n"),
            ("inkapp/store/corrections.py", "            _write_all(fd, data)\n            os.fsync(fd)\n        finally:\n"
             "            os.close(fd)\n\n    def _open_prepared",
             "            _write_all(fd, data)\n        finally:\n            os.close(fd)\n\n    def _open_prepared")),
           ("tests/test_durability.py::test_each_append_is_fsynced_on_the_corrections_file",)),
    Mutant("lock-dropped", "the corrections append no longer takes its file lock",
           (("inkapp/store/files.py", "        with self.lock:\n            self.append_locked(data)\n",
             "        self.append_locked(data)\n"),
            ("inkapp/store/appendfile.py", "        with self.lock:\n            self.append_locked(data)\n",
             "        self.append_locked(data)\n"),
            ("inkapp/store/corrections.py", "        with self._lock:\n            self._append_locked(row)\n",
             "        self._append_locked(row)\n")),
           ("tests/test_durability.py::test_a_second_process_holding_the_lock_makes_the_writer_wait",)),
    Mutant("lock-after-write", "the corrections append takes its lock only after writing",
           (("inkapp/store/files.py", "        with self.lock:\n            self.append_locked(data)\n",
             "        self.append_locked(data)\n        with self.lock:\n            pass\n"),
            ("inkapp/store/appendfile.py", "        with self.lock:\n            self.append_locked(data)\n",
             "        self.append_locked(data)\n        with self.lock:\n            pass\n")),
           ("tests/test_durability.py::test_a_second_process_holding_the_lock_makes_the_writer_wait",)),
    Mutant("lock-per-process", "the corrections lock file is private to each process (threads wait, processes do not)",
           (("inkapp/store/files.py", 'self.lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S)',
             'self.lock = FileLock(f"{self.path}.{os.getpid()}.lock", timeout=LOCK_TIMEOUT_S)'),
            ("inkapp/store/appendfile.py", 'self.lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S)',
             'self.lock = FileLock(f"{self.path}.{os.getpid()}.lock", timeout=LOCK_TIMEOUT_S)')),
           ("tests/test_durability.py::test_a_second_process_holding_the_lock_makes_the_writer_wait",)),
    Mutant("zip-no-size-check", "zip members are inflated without the declared-size check",
           (("inkapp/curation/uploads.py", "if info.file_size > limit:", "if False:"),),
           ("tests/test_durability.py::test_zip_member_over_the_limit_is_refused_before_inflating",)),
    Mutant("autocast-off", "no float16 autocast on CUDA",
           (("inkapp/scoring.py", "torch.autocast(device.type, enabled=device.type == \"cuda\")",
             "torch.autocast(device.type, enabled=False)"),),
           ("tests/test_cuda.py",), needs_cuda=True),
)


def copy_tree(dest: Path) -> None:
    """Copy the working tree's tracked and untracked-not-ignored files to ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def find_edit(tree: Path, mutant: Mutant) -> tuple[Path, str, str] | None:
    """The first alternative whose old text occurs exactly once: (file, original text, mutated text)."""
    for rel, old, new in mutant.edits:
        path = tree / rel
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            if text.count(old) == 1:
                return path, text, text.replace(old, new)
    return None


def run_tests(tree: Path, tests: tuple[str, ...], env: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """pytest (``-x``) on ``tests`` inside ``tree``: (exit code or None on timeout, its output)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"ran past {timeout:.0f} s"
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def last_line(output: str) -> str:
    """pytest's summary line (the last line of its output)."""
    return output.splitlines()[-1] if output else ""


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--why", action="store_true", help="also print pytest's error lines for each mutant")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per pytest run (a hang counts as killed)")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:26} {m.description}  [{' '.join(m.tests)}]")
        return 0
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
    import torch

    cuda = torch.cuda.is_available()
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="inkapp-mutants-") as tmp:
        tree = Path(tmp) / "main"
        copy_tree(tree)
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        where = subprocess.run([sys.executable, "-c", "import inkapp; print(inkapp.__file__)"], cwd=tmp, env=env,
                               capture_output=True, text=True, check=True).stdout.strip()
        if not where.startswith(str(tree)):
            print(f"the copy's package is not the one imported ({where}); stopping", file=sys.stderr)
            return 2
        runnable = [m for m in chosen if cuda or not m.needs_cuda]
        baseline = tuple(dict.fromkeys(t for m in runnable for t in m.tests))
        print(f"baseline: {' '.join(baseline)}", flush=True)
        code, output = run_tests(tree, baseline, env, args.timeout * 2)
        if code != 0:
            print(output[-4000:], f"\nbaseline failed; fix the tests before judging mutants", file=sys.stderr)
            return 2
        print(f"baseline passed: {last_line(output)}", flush=True)
        for m in chosen:
            if m.needs_cuda and not cuda:
                results[m.name] = "skipped"
                print(f"{m.name:26} skipped (needs CUDA)", flush=True)
                continue
            edit = find_edit(tree, m)
            if edit is None:
                results[m.name] = "stale"
                print(f"{m.name:26} STALE: none of its snippets is in the code", flush=True)
                continue
            path, original, mutated = edit
            path.write_text(mutated, encoding="utf-8")
            try:
                code, output = run_tests(tree, m.tests, env, args.timeout)
            finally:
                path.write_text(original, encoding="utf-8")
            # pytest: 1 tests failed, 2 interrupted (e.g. the mutant broke an import); 3-5 are pytest's own errors
            results[m.name] = ("killed" if code in (None, 1, 2) else "survived" if code == 0 else "error")
            print(f"{m.name:26} {results[m.name].upper():8} {m.description} ({last_line(output)})", flush=True)
            if args.why:
                print("\n".join(f"    {line}" for line in output.splitlines() if line.startswith("E ")), flush=True)
    killed = sum(r == "killed" for r in results.values())
    judged = sum(r in ("killed", "survived", "stale", "error") for r in results.values())
    print(f"score: {killed}/{judged} killed" + (f" = {killed / judged:.0%}" if judged else "")
          + f"; {sum(r == 'skipped' for r in results.values())} skipped")
    return 0 if killed == judged else 1


if __name__ == "__main__":
    sys.exit(main())
