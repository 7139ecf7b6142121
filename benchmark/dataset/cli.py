"""`marinebench dataset build` and `marinebench dataset push`."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.dataset.config import SOURCES


def _sources(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if bad := [v for v in items if v not in SOURCES]:
        raise argparse.ArgumentTypeError(
            f"unknown source {', '.join(bad)} (choose {', '.join(SOURCES)})"
        )
    return items


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="build or publish the marine Q&A dataset")
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")

    b = dsub.add_parser(
        "build",
        help="load, clean, dedupe, split, add the hand-written sets, decontaminate and write "
        "build/dataset",
    )
    b.add_argument(
        "--source",
        type=_sources,
        action="append",
        default=None,
        help="curated (default), gemini, local; repeat or comma-separate to combine",
    )
    b.add_argument("--out", type=Path, default=None, help="output folder (default build/dataset)")
    b.add_argument("--src", type=Path, default=None, help="sources folder (default datasets_src)")
    b.add_argument("--seed", type=int, default=None, help="split seed (default 1234)")
    b.add_argument(
        "--topics", default=None, help="comma-separated topics to generate for (default all)"
    )
    b.add_argument(
        "--pairs-per-topic",
        type=int,
        default=None,
        help="pairs asked per topic (generated sources)",
    )
    b.add_argument(
        "--question-threshold",
        type=float,
        default=None,
        help="near-duplicate Jaccard on questions (0.8)",
    )
    b.add_argument(
        "--qa-threshold",
        type=float,
        default=None,
        help="near-duplicate Jaccard on question+answer (0.7)",
    )
    b.add_argument(
        "--decontam-threshold", type=float, default=None, help="held-out vs train Jaccard (0.7)"
    )
    b.add_argument("--gemini-model", default=None, help="Gemini model (default gemini-2.5-flash)")
    b.add_argument(
        "--temperature", type=float, default=None, help="Gemini sampling temperature (0.7)"
    )
    b.add_argument("--max-workers", type=int, default=None, help="concurrent Gemini requests (4)")
    b.add_argument("--local-model", default=None, help="local source: preset, hub id or folder")
    b.add_argument(
        "--max-new-tokens", type=int, default=None, help="local source: tokens per reply (1536)"
    )
    b.set_defaults(func=_build, stage_key=stage_key)

    u = dsub.add_parser("push", help="publish build/dataset to the Hugging Face Hub (idempotent)")
    u.add_argument("--repo-id", required=True, help="USER/NAME of the dataset repo")
    u.add_argument("--private", action="store_true", help="create the repo private")
    u.add_argument(
        "--dry-run", action="store_true", help="list what would be uploaded; change nothing"
    )
    u.add_argument("--path", type=Path, default=None, help="dataset folder (default build/dataset)")
    u.set_defaults(func=_push)


def config_from_args(args: argparse.Namespace):
    from benchmark.dataset.config import BuildConfig

    cfg = BuildConfig()
    if args.source:
        cfg.sources = list(dict.fromkeys(s for group in args.source for s in group))
    for attr, target, key in (
        ("out", cfg, "out"),
        ("src", cfg, "src"),
        ("seed", cfg, "seed"),
        ("question_threshold", cfg.dedup, "question_threshold"),
        ("qa_threshold", cfg.dedup, "qa_threshold"),
        ("decontam_threshold", cfg.dedup, "decontam_threshold"),
        ("gemini_model", cfg.gemini, "model"),
        ("temperature", cfg.gemini, "temperature"),
        ("max_workers", cfg.gemini, "max_workers"),
        ("local_model", cfg.local, "model"),
        ("max_new_tokens", cfg.local, "max_new_tokens"),
    ):
        if getattr(args, attr) is not None:
            setattr(target, key, getattr(args, attr))
    if args.pairs_per_topic is not None:
        cfg.gemini.pairs_per_topic = cfg.local.pairs_per_topic = args.pairs_per_topic
    if args.topics:
        cfg.topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    return cfg


def stage_key(args: argparse.Namespace):
    """The dataset folder and everything that decides it: the build settings (no secrets: the
    Gemini endpoint and key are not in `hashed()`), the sources, and the builder's code."""
    from benchmark.fingerprint import folder_digest, stage_key

    cfg = config_from_args(args)
    inputs = {"config": cfg.hashed(), "sources": folder_digest(cfg.src)}
    return stage_key(cfg.out_dir(), ["benchmark.dataset.cli"], inputs)


def _build(args: argparse.Namespace) -> int:
    from rich.console import Console

    from benchmark.dataset.build import build
    from benchmark.dataset.step_report import print_steps

    cfg = config_from_args(args)
    report = build(cfg)
    console = Console(stderr=True, width=120)
    print_steps(report["steps"], console)
    counts = report["counts"]
    added = f" ({counts['test_extra']} hand-written additions)" if counts["test_extra"] else ""
    recall = f", recall {counts['recall']}" if "recall" in counts else ""
    console.print(
        f"wrote {cfg.out_dir()}: train {counts['train']}, validation {counts['validation']}, "
        f"test {counts['test']}{added}{recall} (build hash {report['build_hash'][:12]})"
    )
    return 0


def _push(args: argparse.Namespace) -> int:
    from benchmark.dataset.push import push
    from benchmark.paths import dataset_dir

    folder = args.path or dataset_dir()
    plan, commit = push(folder, args.repo_id, private=args.private, dry_run=args.dry_run)
    if args.dry_run:
        if not plan.remote_checked:
            print("dry run (no token, remote not checked): every file would be uploaded")
        print(f"dry run: would upload {len(plan.upload)} file(s) to {args.repo_id}")
        for rel in plan.upload:
            print(f"  upload  {rel}  ({(folder / rel).stat().st_size} bytes)")
        for rel in plan.delete:
            print(f"  delete  {rel}")
        if plan.unchanged:
            print(f"  {len(plan.unchanged)} file(s) unchanged")
        return 0
    if commit is None:
        print(f"{args.repo_id} is up to date: nothing changed, no commit made")
    else:
        print(
            f"pushed {len(plan.upload)} file(s), removed {len(plan.delete)} to {args.repo_id} (commit {commit[:12]})"
        )
    return 0
