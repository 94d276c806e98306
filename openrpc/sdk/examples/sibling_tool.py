"""A sibling tool using the generated SDK: submit work, then clean it up.

    python openrpc/sdk/examples/sibling_tool.py [--socket PATH]

Submits three jobs for actor `sibling-demo`, shows what a cleanup of that actor
would remove (dry run), removes it, and checks that nothing of it is left.
The socket defaults to $HERO_CODESCALERS_SOCKET, else
$HERO_SOCKET_DIR/hero_codescalers/rpc.sock. Cleaning up needs an admin peer.
"""

from __future__ import annotations

import argparse
import sys

from hero_codescalers_sdk import AdminRequired, Client, HeroCodescalersError

ACTOR = "sibling-demo"


def run(client: Client) -> None:
    for page in ("home", "about", "home"):
        made = client.jobs_submit(
            kind="user",
            actor=ACTOR,
            target="web",
            script=f"render --page {page}",
            input={"page": page},
        )
        reused = " (action reused)" if made.deduplicated else ""
        print(f"submitted job {made.job_id} running {made.action_id}{reused}")

    plan = client.jobs_cleanup(actor=ACTOR, dry_run=True)
    print(f"dry run: would delete jobs {plan.job_ids} and actions {plan.action_ids}")

    done = client.jobs_cleanup(actor=ACTOR)
    print(f"deleted {done.jobs_deleted} jobs and {done.actions_deleted} actions")
    for line in done.errors:
        print(f"  not deleted: {line}")

    left = client.jobs_list(actor=ACTOR)
    print(f"jobs of {ACTOR} left: {len(left.jobs)}")
    if left.jobs or done.jobs_deleted != len(plan.job_ids):
        raise SystemExit("the cleanup did not remove what the dry run announced")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", help="the service's socket")
    args = parser.parse_args()
    try:
        with Client(args.socket) as client:
            run(client)
    except AdminRequired:
        print(
            "cleaning up needs an admin peer (uid 0, or --admin-uid/--admin-gid)", file=sys.stderr
        )
        return 1
    except HeroCodescalersError as exc:  # any other answered error, or no answer
        print(f"sibling tool: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
