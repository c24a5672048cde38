"""`repic serve` (an OpenAI-compatible caption server on this computer) and `repic server test|set-key`
(checking a server the app will send photos to)."""
from __future__ import annotations

import argparse
import getpass
import os
import re
import sys

from ..core.arg_types import nonempty_text, whole_number
from .output import terminal_safe, write_json


def _user_error(msg: str) -> Exception:
    from .common import UserError

    return UserError(msg)


def _adapter(value: str) -> tuple[str, str]:
    name, sep, folder = value.partition("=")
    if not sep or not name.strip() or not folder.strip():
        raise argparse.ArgumentTypeError("give an adapter as NAME=FOLDER")
    return name.strip(), folder.strip()


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST = re.compile(r"[A-Za-z0-9.:\-\[\]]+")


def check_remote_args(args: argparse.Namespace) -> None:
    """Refuse connection options that cannot be right, before anything is sent or stored."""
    env = getattr(args, "api_key_env", None)
    if env is not None and not _ENV_NAME.fullmatch(env):
        raise _user_error(f"--api-key-env takes the NAME of an environment variable (got {env!r})")
    ca = getattr(args, "ca_file", None)
    if ca is not None and not os.path.isfile(os.path.expanduser(ca)):
        raise _user_error(f"the CA file {ca!r} does not exist")


def cmd_serve(args: argparse.Namespace) -> int:
    from ..captioning.models import ModelError
    from ..core.settings import Settings
    from ..server.app import create_app, load_models

    check_remote_args(args)
    if not _HOST.fullmatch(args.host):
        raise _user_error(f"--host takes an address to listen on, like 127.0.0.1 or 0.0.0.0 (got {args.host!r})")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise _user_error(f"the environment variable {args.api_key_env} holds no API key")
    from ..captioning.remote import is_local_host

    if not is_local_host(args.host) and not api_key:
        print("repic serve: warning: listening beyond this computer without an API key (--api-key-env): "
              "anyone on the network can use the GPU", file=sys.stderr)
    model = args.model or Settings.load().model.source
    try:
        models = load_models(model, args.adapter or [], served_name=args.served_model_name,
                             quantization=args.quant, device=args.device, max_pixels=args.max_pixels,
                             batch_size=args.batch_size)
    except (ModelError, ValueError) as exc:
        raise _user_error(str(exc)) from None
    import uvicorn

    app = create_app(models, api_key=api_key, max_images=args.max_images)
    print(f"repic serve: {', '.join(models)} on http://{args.host}:{args.port}/v1 "
          f"({'API key required' if api_key else 'no API key'})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _remote_options(args: argparse.Namespace, urls: list[str]):
    from ..captioning.remote import RemoteOptions, server_settings
    from ..core.settings import Settings

    prefs = server_settings(Settings.load())
    return RemoteOptions(servers=urls, served_model=args.served_model or prefs["served_model"],
                         api_key_env=args.api_key_env or prefs["api_key_env"], ca_file=args.ca_file or prefs["ca_file"],
                         allow_http=args.allow_http or prefs["allow_http"], timeout=30.0)


def _local_tokenizer(hint: str | None):
    """The model's tokenizer if it is on this computer (a folder, or in the Hugging Face cache)."""
    if not hint:
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(hint, local_files_only=True)
    except Exception:
        return None


def cmd_server_test(args: argparse.Namespace) -> int:
    from ..captioning.remote import test_connection
    from ..core.settings import Settings

    check_remote_args(args)
    urls = args.url or []
    options = _remote_options(args, urls)
    if not urls:
        from ..captioning.remote import server_settings

        default = server_settings(Settings.load())["url"]
        if not default:
            raise _user_error("give a server URL (or set a default server in Settings)")
        options.servers = [default]
    hint = args.model or Settings.load().model.source
    reports = test_connection(options, tokenizer=_local_tokenizer(hint), model_hint=hint)
    if args.json:
        write_json([r.as_dict() for r in reports], indent=None)
    else:
        for r in reports:
            print(terminal_safe(f"{r.url}: {'OK' if r.ok else 'FAILED'}"))
            for line in r.lines:
                print(terminal_safe(f"  {line}"))
    failed = [r.url for r in reports if not r.ok]
    if failed:
        raise _user_error(f"the test failed for {', '.join(failed)} (details above)")
    return 0


def cmd_server_set_key(args: argparse.Namespace) -> int:
    from ..captioning.remote import RemoteError, ServerAddress, store_api_key

    try:
        address = ServerAddress.parse(args.url, allow_http=True)
    except RemoteError as exc:
        raise _user_error(str(exc)) from None
    try:
        key = sys.stdin.readline().strip() if args.stdin else getpass.getpass(f"API key for {address.origin}: ")
    except (OSError, EOFError):
        key = ""
    if not key:
        raise _user_error("no key given")
    try:
        store_api_key(address, key)
    except Exception as exc:
        raise _user_error(f"the OS keyring cannot store it ({exc}); use the REPIC_API_KEY variable instead") from None
    print(f"stored the API key for {address.origin} in the OS keyring")
    return 0


def add_remote_options(s: argparse.ArgumentParser) -> None:
    """Options about the server connection, shared by `repic caption` and `repic server test`."""
    s.add_argument("--served-model", type=nonempty_text, metavar="NAME",
                   help="the server's name for the model (default: settings, else the only one it serves)")
    s.add_argument("--api-key-env", type=nonempty_text, metavar="VAR",
                   help="environment variable with the server's API key (default: REPIC_API_KEY, then the OS keyring)")
    s.add_argument("--ca-file", type=nonempty_text, metavar="FILE", help="trust this CA file for the server's https")
    s.add_argument("--allow-http", action="store_true",
                   help="allow plain http to a server that is not this computer (photos travel unencrypted)")


def add_server_commands(sub, common: argparse.ArgumentParser) -> None:
    from ..captioning.prompt import max_pixels

    s = sub.add_parser("serve", parents=[common],
                       help="serve the caption model to other computers (OpenAI-compatible; vLLM scales further)")
    s.add_argument("--model", type=nonempty_text, metavar="DIR|ID", help="model folder or hub id (default: settings)")
    s.add_argument("--adapter", type=_adapter, action="append", metavar="NAME=DIR",
                   help="also serve the base model with this LoRA adapter, under NAME (repeatable)")
    s.add_argument("--served-model-name", type=nonempty_text, metavar="NAME",
                   help="the base model's name for clients (default: --model as given)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)")
    s.add_argument("--port", type=whole_number(1, 65535), default=8000)
    s.add_argument("--api-key-env", type=nonempty_text, metavar="VAR",
                   help="require the API key held in this environment variable")
    s.add_argument("--quant", choices=["none", "4bit", "8bit"], default="none")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--batch-size", type=whole_number(1, 64), default=8, help="photos per engine batch (default 8)")
    s.add_argument("--max-pixels", type=max_pixels, help="per image (default: the model settings')")
    s.add_argument("--max-images", type=whole_number(1, 256), default=16, help="images per prompt (default 16)")
    s.set_defaults(func=cmd_serve)

    server = sub.add_parser("server", help="caption servers: test one, store its API key").add_subparsers(
        dest="sub", metavar="SUBCOMMAND")
    server.required = True
    s = server.add_parser("test", parents=[common], help="reach a server, check its key, models and RePIC prompt")
    s.add_argument("url", nargs="*", help="server URL, e.g. https://gpu-box:8000 (default: settings)")
    s.add_argument("--model", type=nonempty_text, metavar="DIR|ID",
                   help="local copy of the model whose tokenizer the prompt check uses (default: settings)")
    add_remote_options(s)
    s.set_defaults(func=cmd_server_test)
    s = server.add_parser("set-key", parents=[common], help="store a server's API key in the OS keyring")
    s.add_argument("url")
    s.add_argument("--stdin", action="store_true", help="read the key from standard input")
    s.set_defaults(func=cmd_server_set_key)
