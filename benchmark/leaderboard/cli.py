"""`marinebench site build` and `marinebench site serve`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmark.paths import SITE_SRC, build_dir, dataset_dir, results_dir, site_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("site", help="build or serve the static leaderboard site")
    site_sub = p.add_subparsers(dest="site_command", required=True, metavar="SUBCOMMAND")

    b = site_sub.add_parser("build", help="render build/results (and the dataset) into build/site")
    b.add_argument(
        "--results", type=Path, default=None, help="results root (default build/results)"
    )
    b.add_argument("--out", type=Path, default=None, help="site folder (default build/site)")
    b.add_argument(
        "--dataset", type=Path, default=None, help="dataset folder (default build/dataset)"
    )
    b.add_argument(
        "--datatrack",
        type=Path,
        default=None,
        help="data track folder for data.html (default build/datatrack, when it has results)",
    )
    b.set_defaults(func=_build, stage_key=stage_key)

    s = site_sub.add_parser("serve", help="serve the built site on 127.0.0.1 for browsing")
    s.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    s.add_argument("--dir", type=Path, default=None, help="site folder (default build/site)")
    s.set_defaults(func=_serve)


def stage_key(args: argparse.Namespace):
    """The site folder and everything that decides it: the results, dataset and data track
    folders it renders, the templates and static files, the protocol its method page quotes, and
    the code and packages that render them."""
    from benchmark.contracts.results import CACHE_DIR
    from benchmark.contracts.site import PROTOCOL_DOC
    from benchmark.fingerprint import folder_digest, stage_key
    from benchmark.paths import REPO_ROOT

    inputs = {
        "results": folder_digest(args.results or results_dir(), exclude=(CACHE_DIR,)),
        "dataset": folder_digest(args.dataset or dataset_dir()),
        "datatrack": _datatrack_digest(_datatrack(args)),
        "site_src": folder_digest(SITE_SRC),
        "protocol": folder_digest(REPO_ROOT / PROTOCOL_DOC),
    }
    return stage_key(args.out or site_dir(), ["benchmark.leaderboard.cli"], inputs)


def _datatrack(args: argparse.Namespace) -> Path:
    from benchmark.contracts.datatrack import root

    return args.datatrack or root(build_dir())


def _datatrack_digest(folder: Path) -> str:
    """What data.html is rendered from: the submission records and the track's results (its
    adapters' weights and the evaluation cache never reach the page); "missing" without it."""
    from benchmark.contracts.results import CACHE_DIR
    from benchmark.fingerprint import folder_digest
    from benchmark.leaderboard.datatrack_page import ADAPTERS_REL, RESULTS_REL

    cache = (RESULTS_REL.parent / CACHE_DIR).as_posix()
    return folder_digest(folder, exclude=(ADAPTERS_REL.as_posix(), cache))


def _build(args: argparse.Namespace) -> int:
    from benchmark.errors import UserError
    from benchmark.leaderboard.render import build_site

    if args.datatrack is not None and not args.datatrack.is_dir():
        raise UserError(f"--datatrack {args.datatrack}: no such folder (run `nox -s datatrack`)")
    out = args.out or site_dir()
    start = time.perf_counter()
    info = build_site(
        args.results or results_dir(), out, args.dataset or dataset_dir(), _datatrack(args)
    )
    seconds = time.perf_counter() - start
    print(
        f"site: {info['models']} models x {info['columns']} metrics, {info['compare_pages']} compare pages, "
        f"{info['files']} files ({info['bytes'] / 1e6:.1f} MB) in {seconds:.2f} s -> {out / 'index.html'}"
    )
    if info["datatrack_rows"] is not None:
        print(f"data track: {info['datatrack_rows']} submissions -> {out / 'data.html'}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from benchmark.leaderboard.serve import HOST, make_server

    directory = args.dir or site_dir()
    server = make_server(directory, args.port)
    print(f"serving {directory} at http://{HOST}:{server.server_address[1]}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
