"""``pyctr events``: print the daemon's events as they happen, until interrupted."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from pycontainerd.cli._app import add_command, command, jsonable, rfc3339, wants_json
from pycontainerd.client.events import decode

if TYPE_CHECKING:
    import argparse

    from pycontainerd.client.transfer import Client


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``events``."""
    p = add_command(
        sub,
        "events",
        "print events as the daemon publishes them (Ctrl-C stops)",
        aliases=["event"],
        listing=True,
        examples=[
            "pyctr events",
            "pyctr events 'topic~=\"/tasks/\"' 'namespace==default'",
            "pyctr events --format json    # one JSON object per line",
        ],
        details="Each line: time, namespace, topic and the event's fields.",
    )
    p.add_argument("filters", nargs="*", help='containerd filters, e.g. topic~="/tasks/"')
    p.set_defaults(run=command(_events))


async def _events(args: argparse.Namespace, client: Client) -> None:
    try:
        async for event in client.events.subscribe(args.filters):
            fields = decode(event.event)
            if wants_json(args):
                record = {
                    "timestamp": rfc3339(event.timestamp),
                    "namespace": event.namespace,
                    "topic": event.topic,
                    "type": event.event.type_url if event.event else "",
                    "event": jsonable(fields),
                }
                print(json.dumps(record), flush=True)
            else:
                print(
                    f"{rfc3339(event.timestamp)} {event.namespace} {event.topic} {json.dumps(fields)}",
                    flush=True,
                )
    except BrokenPipeError:
        sys.stderr.close()
