"""`tfmusic serve`: the embedded TF Serving-compatible gRPC (+REST) server over a model repository."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

DESCRIPTION = """\
Serve a model repository <repo>/<model>/<version>/ (as written by `tfmusic export saved-model`) over
TF Serving's gRPC API (PredictionService Predict/GetModelMetadata, ModelService GetModelStatus) and,
with --rest-port, its REST API (and Prometheus metrics with --monitoring-config), plus grpc.health.v1. Production serving uses real TF Serving on the same
repository and the same serving/*.config files (see serving/README.md).

examples:
  tfmusic serve --models demo_out/models --port 8500 --rest-port 8501
  tfmusic serve --models demo_out/models --config serving/models.config --batching-config serving/batching.config \
      --rest-port 8501 --monitoring-config serving/monitoring.config
  # one-shot: start on a free port, run one tfmusic command against it ({address} is replaced), stop
  tfmusic serve --models demo_out/models --port 0 --run separate --server {address} --model separator song.wav
"""


def run_serve(args: argparse.Namespace) -> int:
    from tfmusic.cli.main import CliError
    from tfmusic.serving.server import (MAX_MESSAGE_BYTES, EmbeddedServer, parse_batching_config,
                                        parse_monitoring_config)

    if args.models is None and args.config is None:
        raise CliError("give --models REPO and/or --config models.config")
    if args.models is not None and not Path(args.models).is_dir():
        raise CliError(f"{args.models}: model repository folder does not exist")
    try:
        batching = parse_batching_config(args.batching_config) if args.batching_config else None
        monitoring = parse_monitoring_config(args.monitoring_config) if args.monitoring_config else None
    except (OSError, ValueError) as err:
        raise CliError(str(err)) from err
    max_bytes = MAX_MESSAGE_BYTES if args.max_message_mb is None else args.max_message_mb * 1024 * 1024
    try:
        server = EmbeddedServer(args.models, config=args.config, host=args.host, port=args.port,
                                rest_port=args.rest_port, batching=batching, monitoring=monitoring,
                                poll_seconds=args.poll_seconds, warmup=not args.no_warmup,
                                max_message_bytes=max_bytes)
        server.start()
    except ValueError as err:
        raise CliError(str(err)) from err
    except OSError as err:
        raise CliError(f"cannot start server: {err}") from err
    rest = f", REST on {server.rest_address}" if server.rest_address else ""
    scope = " (loopback only)" if args.host in ("127.0.0.1", "::1", "localhost") else " (reachable from the network)"
    print(f"tfmusic serve: gRPC on {server.address}{rest}{scope}; models {server.manager.available()}",
          file=sys.stderr, flush=True)
    if args.ready_file:
        tmp = Path(args.ready_file).with_suffix(".tmp")
        tmp.write_text(server.address + "\n")
        os.replace(tmp, args.ready_file)
    try:
        if args.run:
            argv = [a.replace("{address}", server.address) for a in args.run]
            if argv and argv[0] == "--":
                argv = argv[1:]
            if not argv:
                raise CliError("--run needs a tfmusic command to run")
            return subprocess.call([sys.executable, "-m", "tfmusic", *argv])
        signal.signal(signal.SIGTERM, lambda *_: server.stop())
        try:
            server.wait()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        server.stop()


def _port(text: str) -> int:
    """A TCP port 0..65535 (0: pick a free one); gRPC would otherwise wrap 70000 to 4464 silently."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0..65535")
    return port


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve exported models over TF Serving's gRPC/REST API (embedded server)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", metavar="REPO", help="model repository: REPO/<model>/<version>/saved_model.pb")
    parser.add_argument("--config", metavar="models.config",
                        help="TF Serving ModelServerConfig text proto (version policies and labels); with "
                             "--models, each base_path's last component names the folder under REPO")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=_port, default=8500, help="gRPC port (default 8500; 0 = pick a free port)")
    parser.add_argument("--rest-port", type=_port, default=None, help="also serve REST :predict on this port")
    parser.add_argument("--batching-config", metavar="FILE",
                        help="TF Serving batching parameters file (max_batch_size, batch_timeout_micros, ...)")
    parser.add_argument("--poll-seconds", type=float, default=2.0,
                        help="how often to look for new/removed versions and config changes (0 = never)")
    parser.add_argument("--max-message-mb", type=int, default=None,
                        help="gRPC message size limit in MiB (default: 2 GiB - 1 byte, TF Serving's INT32_MAX)")
    parser.add_argument("--monitoring-config", metavar="FILE",
                        help="TF Serving monitoring config (prometheus_config { enable: true path: ... }); "
                             "serves TF Serving's metrics on the REST port")
    parser.add_argument("--no-warmup", action="store_true",
                        help="do not replay assets.extra/tf_serving_warmup_requests when loading")
    parser.add_argument("--ready-file", metavar="FILE", help="write host:port here once serving (for scripts)")
    parser.add_argument("--run", nargs=argparse.REMAINDER, metavar="COMMAND",
                        help="run this tfmusic command against the server ({address} = host:port), then stop "
                             "and exit with its status")
    parser.set_defaults(handler=run_serve)
