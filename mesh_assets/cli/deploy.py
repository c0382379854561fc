"""``mesh helm values``: the Helm chart's domain list, written or checked. ``mesh image``: the
platform's container image, built with podman."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesh_assets import image
from mesh_assets.cli import add_verb
from mesh_assets.deploy import (
    DOMAINS_FILE,
    DeployError,
    check_domains_file,
    domain_entries,
    write_domains_file,
)


def cmd_helm_values(args) -> int:
    target = Path(args.output) if args.output else DOMAINS_FILE
    try:
        if args.check:
            diff = check_domains_file(target)
            if diff:
                print("\n".join(diff))
                print(f"mesh: {target} is stale: run `mesh helm values` and commit it", file=sys.stderr)
                return 1
            print(f"{target}: in sync with {len(domain_entries())} domain(s)")
            return 0
        changed = write_domains_file(target)
    except DeployError as exc:
        raise SystemExit(f"mesh: {exc}") from None
    names = ", ".join(e["name"] for e in domain_entries())
    print(f"{'wrote' if changed else 'unchanged'} {target}: {names}")
    return 0


def cmd_image_build(args) -> int:
    try:
        built = image.build(tag=args.tag, base=args.base)
    except image.ImageError as exc:
        raise SystemExit(f"mesh: {exc}") from None
    print(built.describe())
    return 0


def cmd_image_base(_args) -> int:
    try:
        print(image.build_base())
    except image.ImageError as exc:
        raise SystemExit(f"mesh: {exc}") from None
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    helm = add_verb(subparsers, "helm")
    helm_sub = helm.add_subparsers(dest="helm_command", required=True)
    values = helm_sub.add_parser("values", help="write the chart's domain list from domains/")
    values.add_argument(
        "--check", action="store_true", help="exit 1 when the committed file differs from domains/"
    )
    values.add_argument("--output", help=f"file to write (default: {DOMAINS_FILE})")
    values.set_defaults(fn=cmd_helm_values)

    img = add_verb(subparsers, "image")
    img_sub = img.add_subparsers(dest="image_command", required=True)
    build = img_sub.add_parser("build", help="build the platform image from Containerfile with podman")
    build.add_argument(
        "--tag", help=f"image tag (default: the project's version; {image.IMAGE_REPOSITORY}:TAG)"
    )
    build.add_argument(
        "--base",
        help="base image (the Containerfile's PYTHON_IMAGE); default: made here from Debian's packages",
    )
    build.set_defaults(fn=cmd_image_build)
    base = img_sub.add_parser("base", help="make (once) the Debian base image, print its reference")
    base.set_defaults(fn=cmd_image_base)
