#!/usr/bin/env bash
# RePIC Desktop per-user installer for Linux and macOS (no root, nothing outside your home folder).
#
#   installers/install.sh                 install, or upgrade in place (asks before it starts)
#   installers/install.sh --yes           the same without questions
#   installers/install.sh --uninstall     remove the app; your library, photos, models and settings stay
#
# What it does: checks for Python >= 3.10, makes a private virtual environment in the app's user data
# folder (the folder the app itself uses: ~/.local/share/RePIC Desktop on Linux,
# ~/Library/Application Support/RePIC Desktop on macOS) under app/, installs the PyTorch build that fits
# this machine and then the app, adds a menu entry with the icon (Linux: a freedesktop .desktop file and
# a hicolor icon; macOS: ~/Applications/RePIC Desktop.app), links `repic` and `repic-train` into
# ~/.local/bin, and puts an uninstaller beside the environment (app/uninstall.sh).
# Everything it creates is listed in app/manifest.txt, which is what --uninstall removes.
#
# Options (each also as an environment variable):
#   --torch auto|cpu|cuda|mps   REPIC_TORCH        which PyTorch build (auto: NVIDIA GPU -> cuda,
#                                                  Apple silicon -> mps, otherwise cpu)
#   --torch-spec SPEC           REPIC_TORCH_SPEC   the pip requirement for torch (default: the pin in
#                                                  requirements.txt); given alone it uses pip's own
#                                                  index settings, e.g. a local wheel
#   --torch-index URL           REPIC_TORCH_INDEX  the index torch comes from (cpu default:
#                                                  https://download.pytorch.org/whl/cpu)
#   --source DIR|WHEEL          REPIC_SOURCE       what to install (default: this checkout)
#   --python PYTHON             REPIC_PYTHON       the interpreter for the environment (default: python3)
#   --reuse-site-packages DIR                      offline/test install: the new environment sees DIR
#                                                  (an existing environment's site-packages) and only
#                                                  the app itself is installed, without network
#   --no-menu                                      no menu entry, icon or ~/.local/bin links
#   --yes, -y                   REPIC_YES=1        no questions
#   --uninstall                                    remove the app
set -euo pipefail

APP_NAME="RePIC Desktop"
APP_ID="repic-desktop"
MIN_PY_MINOR=10

say() { printf '%s\n' "$*"; }
warn() { printf 'install.sh: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

torch_choice="${REPIC_TORCH:-auto}"
torch_spec="${REPIC_TORCH_SPEC:-}"
torch_index="${REPIC_TORCH_INDEX:-}"
source_arg="${REPIC_SOURCE:-}"
python_arg="${REPIC_PYTHON:-}"
reuse_site=""
assume_yes="${REPIC_YES:-0}"
action="install"
menu=1

while [ $# -gt 0 ]; do
    case "$1" in
        --torch) torch_choice="${2:?--torch needs auto, cpu, cuda or mps}"; shift 2 ;;
        --torch=*) torch_choice="${1#*=}"; shift ;;
        --torch-spec) torch_spec="${2:?--torch-spec needs a requirement}"; shift 2 ;;
        --torch-spec=*) torch_spec="${1#*=}"; shift ;;
        --torch-index) torch_index="${2:?--torch-index needs a URL}"; shift 2 ;;
        --torch-index=*) torch_index="${1#*=}"; shift ;;
        --source) source_arg="${2:?--source needs a folder or a wheel}"; shift 2 ;;
        --source=*) source_arg="${1#*=}"; shift ;;
        --python) python_arg="${2:?--python needs an interpreter}"; shift 2 ;;
        --python=*) python_arg="${1#*=}"; shift ;;
        --reuse-site-packages) reuse_site="${2:?--reuse-site-packages needs a folder}"; shift 2 ;;
        --reuse-site-packages=*) reuse_site="${1#*=}"; shift ;;
        --no-menu) menu=0; shift ;;
        -y|--yes) assume_yes=1; shift ;;
        --uninstall) action="uninstall"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done

case "$torch_choice" in auto|cpu|cuda|mps) ;; *) die "--torch must be auto, cpu, cuda or mps, not '$torch_choice'" ;; esac

os="$(uname -s)"
arch="$(uname -m)"
# The same folders platformdirs gives the app (repic_desktop/core/paths.py): data, config, cache.
case "$os" in
    Linux)
        data_dir="${XDG_DATA_HOME:-$HOME/.local/share}/$APP_NAME"
        config_dir="${XDG_CONFIG_HOME:-$HOME/.config}/$APP_NAME"
        xdg_data="${XDG_DATA_HOME:-$HOME/.local/share}" ;;
    Darwin)
        data_dir="$HOME/Library/Application Support/$APP_NAME"
        config_dir="$data_dir" ;;
    *) die "this installer is for Linux and macOS; on Windows use installers/install.ps1" ;;
esac
app_dir="$data_dir/app"
venv="$app_dir/venv"
manifest="$app_dir/manifest.txt"
bin_dir="$HOME/.local/bin"

confirm() {
    [ "$assume_yes" = 1 ] && return 0
    if [ ! -t 0 ]; then
        die "no terminal to ask on: run again with --yes"
    fi
    printf '%s [Y/n] ' "$1"
    read -r reply
    case "$reply" in ""|y|Y|yes|Yes) return 0 ;; *) return 1 ;; esac
}

# ---------------------------------------------------------------------------------------------------
# Uninstall: remove what the manifest lists (files, then folders that are left empty), never the
# library, reference photos, models, adapters or settings, which live beside app/, not in it.
uninstall() {
    if [ ! -d "$app_dir" ]; then
        say "$APP_NAME is not installed here (no $app_dir)."
        return 0
    fi
    say "This removes the app ($app_dir), its menu entry and its command links."
    say "It keeps your library, reference photos, models, adapters and settings in:"
    say "  $data_dir"
    [ "$config_dir" != "$data_dir" ] && say "  $config_dir"
    confirm "Uninstall $APP_NAME?" || { say "Nothing removed."; return 0; }
    local entries=""
    [ -f "$manifest" ] && entries="$(cat "$manifest")"
    # files, links and trees first
    while IFS=$'\t' read -r kind path; do
        case "$kind" in
            file|link) if [ -L "$path" ] || [ -f "$path" ]; then rm -f -- "$path"; fi ;;
            tree) rm -rf -- "$path" ;;
        esac
    done <<< "$entries"
    rm -rf -- "$app_dir"
    refresh_menus
    if [ "$os" = Linux ]; then
        # update-desktop-database's index: pointless once no entry is left to index (a fresh account)
        local apps="$xdg_data/applications"
        if [ -f "$apps/mimeinfo.cache" ] && ! ls "$apps"/*.desktop >/dev/null 2>&1; then
            rm -f -- "$apps/mimeinfo.cache"
        fi
    fi
    # then the folders the installer created, deepest first, each only while empty: the data folder
    # keeps the library, and the user may have put their own things into ~/.local/bin since
    { printf '%s\n' "$entries" | grep $'^dir\t' || true; } | cut -f2- | awk '{ print length($0) "\t" $0 }' | sort -rn |
        cut -f2- | while IFS= read -r d; do
            if [ -d "$d" ]; then rmdir -- "$d" 2>/dev/null || true; fi
        done
    say "$APP_NAME is uninstalled."
    if [ -d "$data_dir" ]; then say "Your library and models are still in $data_dir."; fi
}

refresh_menus() {
    [ "$os" = Linux ] || return 0
    local apps="$xdg_data/applications"
    if command -v update-desktop-database >/dev/null 2>&1 && [ -d "$apps" ]; then
        update-desktop-database -q "$apps" 2>/dev/null || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -f "$xdg_data/icons/hicolor/index.theme" ]; then
        gtk-update-icon-cache -q -t "$xdg_data/icons/hicolor" 2>/dev/null || true
    fi
}

if [ "$action" = uninstall ]; then
    uninstall
    exit 0
fi

# ---------------------------------------------------------------------------------------------------
# Python
find_python() {
    local c
    for c in ${python_arg:+"$python_arg"} python3 python3.13 python3.12 python3.11 python3.10 python; do
        if command -v "$c" >/dev/null 2>&1 &&
            "$c" -c "import sys; sys.exit(0 if sys.version_info >= (3, $MIN_PY_MINOR) else 1)" 2>/dev/null; then
            command -v "$c"
            return 0
        fi
        [ -n "$python_arg" ] && break
    done
    return 1
}
py="$(find_python)" || {
    if [ -n "$python_arg" ]; then die "$python_arg is not Python 3.$MIN_PY_MINOR or newer"; fi
    case "$os" in
        Linux) die "needs Python 3.$MIN_PY_MINOR or newer with venv: e.g. 'sudo apt install python3 python3-venv' (Debian/Ubuntu), 'sudo dnf install python3' (Fedora), 'sudo pacman -S python' (Arch)" ;;
        Darwin) die "needs Python 3.$MIN_PY_MINOR or newer: install it from python.org or with 'brew install python'" ;;
    esac
}
py_version="$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
if [ -z "$reuse_site" ] && ! "$py" -c "import venv, ensurepip" 2>/dev/null; then
    die "$py has no venv/ensurepip module: 'sudo apt install python3-venv' (Debian/Ubuntu) adds it"
fi

# ---------------------------------------------------------------------------------------------------
# What to install
repo_root="$(cd "$here/.." && pwd)"
if [ -z "$source_arg" ]; then
    [ -f "$repo_root/pyproject.toml" ] || die "not run from a RePIC Desktop checkout: pass --source DIR|WHEEL"
    source_arg="$repo_root"
fi
[ -e "$source_arg" ] || die "--source $source_arg does not exist"
source_arg="$(cd "$(dirname "$source_arg")" && pwd)/$(basename "$source_arg")"
requirements=""
if [ -d "$source_arg" ] && [ -f "$source_arg/requirements.txt" ]; then
    requirements="$source_arg/requirements.txt"
elif [ -f "$repo_root/requirements.txt" ]; then
    requirements="$repo_root/requirements.txt"
fi
pinned_torch=""
if [ -n "$requirements" ]; then
    pinned_torch="$(grep -E '^torch==' "$requirements" | head -n1 | tr -d '[:space:]' || true)"
fi

# ---------------------------------------------------------------------------------------------------
# Which PyTorch
gpu_note=""
if [ "$os" = Linux ] && command -v nvidia-smi >/dev/null 2>&1; then
    gpu_line="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n1 || true)"
    if [ -n "$gpu_line" ]; then gpu_note="NVIDIA GPU found: $gpu_line"
    else gpu_note="nvidia-smi is installed but reports no working GPU (is the driver loaded?)"; fi
fi
if [ "$os" = Darwin ]; then
    if [ "$arch" = arm64 ]; then detected=mps; else detected=cpu; fi
elif [ -n "${gpu_line:-}" ]; then
    detected=cuda
else
    detected=cpu
fi
if [ "$torch_choice" = auto ]; then torch_build="$detected"; else torch_build="$torch_choice"; fi
driver_note=""
if [ "$torch_build" = cuda ] && [ -n "${gpu_line:-}" ] && [ -z "$torch_spec$torch_index" ]; then
    driver="$(printf '%s' "$gpu_line" | cut -d, -f2 | tr -d ' ')"
    if [ "${driver%%.*}" -lt 580 ] 2>/dev/null; then
        driver_note="NVIDIA driver $driver is older than 580, which PyPI's CUDA 13 build of PyTorch needs: update the driver first, or install with --torch cpu (the app then says so before each caption job)"
    fi
fi
if [ "$os" = Darwin ] && [ "$torch_build" = cuda ]; then die "there is no CUDA PyTorch for macOS: use --torch mps or cpu"; fi
if [ "$os" = Linux ] && [ "$torch_build" = mps ]; then die "mps is Apple silicon only: use --torch cpu or cuda"; fi
if [ "$os" = Darwin ] && [ "$arch" != arm64 ] && [ -z "$torch_spec" ]; then
    die "PyTorch publishes no builds >= 2.4 for Intel Macs; pass --torch-spec if you have one"
fi

torch_req="${torch_spec:-${pinned_torch:-torch}}"
torch_pip_args=()
torch_desc=""
if [ -n "$torch_spec" ]; then
    [ -n "$torch_index" ] && torch_pip_args=(--index-url "$torch_index")
    torch_desc="$torch_req as given${torch_index:+ from $torch_index}"
else
    case "$torch_build" in
        cpu)
            if [ "$os" = Linux ]; then
                torch_pip_args=(--index-url "${torch_index:-https://download.pytorch.org/whl/cpu}")
                torch_desc="CPU-only build (about 200 MB) from ${torch_index:-https://download.pytorch.org/whl/cpu}"
            else
                torch_desc="CPU build from PyPI"
            fi ;;
        cuda)
            [ -n "$torch_index" ] && torch_pip_args=(--index-url "$torch_index")
            torch_desc="CUDA build from ${torch_index:-PyPI} (several GB with its NVIDIA libraries; needs NVIDIA driver 580 or newer for CUDA 13)" ;;
        mps)
            [ -n "$torch_index" ] && torch_pip_args=(--index-url "$torch_index")
            torch_desc="PyPI build with Apple-silicon (MPS) support" ;;
    esac
fi

say "$APP_NAME installer"
say "  Python:      $py ($py_version)"
say "  install to:  $app_dir"
say "  app from:    $source_arg"
[ -n "$gpu_note" ] && say "  $gpu_note"
[ -n "$driver_note" ] && warn "$driver_note"
if [ -n "$reuse_site" ]; then
    say "  PyTorch:     reused from $reuse_site (offline install of the app only)"
else
    say "  PyTorch:     $torch_build ($torch_desc)"
    say "               change with --torch cpu|cuda|mps or --torch-spec SPEC"
fi
if [ -d "$venv" ]; then say "  (already installed: this upgrades it in place; your library and settings stay)"; fi
confirm "Install?" || { say "Nothing installed."; exit 0; }

# ---------------------------------------------------------------------------------------------------
# The manifest: every path we create, so --uninstall removes exactly that.
new_manifest="$manifest.new"
pending_dirs=()
p="$app_dir"
while [ ! -d "$p" ]; do pending_dirs+=("$p"); p="$(dirname "$p")"; done
mkdir -p "$app_dir"
: > "$new_manifest"
record() { printf '%s\t%s\n' "$1" "$2" >> "$new_manifest"; }
for ((i=${#pending_dirs[@]}-1; i>=0; i--)); do record dir "${pending_dirs[$i]}"; done
# mkdir -p that records each folder it had to create
make_dir() {
    local d="$1" missing=() p
    p="$d"
    while [ ! -d "$p" ]; do missing+=("$p"); p="$(dirname "$p")"; done
    mkdir -p "$d"
    local i
    for ((i=${#missing[@]}-1; i>=0; i--)); do record dir "${missing[$i]}"; done
}
# folders created by an earlier install stay ours across upgrades
if [ -f "$manifest" ]; then grep $'^dir\t' "$manifest" >> "$new_manifest" || true; fi

# ---------------------------------------------------------------------------------------------------
# A checkout is built from a copy: pip would build inside the checkout, and setuptools reuses its
# build/lib, so a module deleted since an earlier build would still be installed (and a read-only
# checkout could not be built at all).
pkg_source="$source_arg"
stage=""
if [ -d "$source_arg" ]; then
    stage="$(mktemp -d "${TMPDIR:-/tmp}/repic-src.XXXXXX")"
    trap 'rm -rf "$stage"' EXIT
    (cd "$source_arg" && tar -cf - --exclude=__pycache__ --exclude='*.egg-info' \
        $(for f in pyproject.toml setup.py setup.cfg MANIFEST.in README.md LICENSE repic_desktop trainer; do
              [ -e "$f" ] && printf '%s ' "$f"; done)) | (cd "$stage" && tar -xf -)
    pkg_source="$stage"
fi

# ---------------------------------------------------------------------------------------------------
# The environment
pip_quiet=(--disable-pip-version-check --no-input)
if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c "import sys" 2>/dev/null; then
    warn "the old environment is broken (Python moved?): making a new one"
    rm -rf -- "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
    say "Creating the environment..."
    if [ -n "$reuse_site" ]; then
        "$py" -m venv --without-pip "$venv"
    else
        "$py" -m venv "$venv"
    fi
fi
vpy="$venv/bin/python"
if [ -n "$reuse_site" ]; then
    [ -d "$reuse_site" ] || die "--reuse-site-packages $reuse_site is not a folder"
    site="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    # a plain path line: the reused folder's own .pth files (an editable install of another
    # checkout) are not run, so the app installed here is the one that imports
    printf '%s\n' "$(cd "$reuse_site" && pwd)" > "$site/zz-repic-reuse.pth"
    "$vpy" -m pip --version >/dev/null 2>&1 || die "no pip in $reuse_site"
    say "Installing the app (offline, without dependencies)..."
    "$vpy" -m pip install "${pip_quiet[@]}" --no-cache-dir --no-index --no-deps --no-build-isolation \
        --force-reinstall "$pkg_source"
else
    # pip's own download cache would be left in ~/.cache after an uninstall: keep it in app/
    export PIP_CACHE_DIR="$app_dir/pip-cache"
    "$vpy" -m pip install "${pip_quiet[@]}" --upgrade pip >/dev/null || warn "could not upgrade pip; going on"
    say "Installing PyTorch: $torch_req ${torch_pip_args[*]+"${torch_pip_args[*]}"}"
    # torch first and on its own, so the requirements below cannot pull a different build
    "$vpy" -m pip install "${pip_quiet[@]}" ${torch_pip_args[@]+"${torch_pip_args[@]}"} "$torch_req"
    say "Installing $APP_NAME and its libraries..."
    req_args=()
    if [ -n "$requirements" ]; then
        # torch is already in: filter its pin out so pip does not go looking for it on PyPI
        grep -v -E '^torch([=<>!~ ;]|$)' "$requirements" > "$app_dir/requirements.txt"
        req_args=(-r "$app_dir/requirements.txt")
    fi
    "$vpy" -m pip install "${pip_quiet[@]}" --upgrade ${req_args[@]+"${req_args[@]}"} "$pkg_source"
    # the app itself again without deps: a same-version rebuild of a checkout must still land
    "$vpy" -m pip install "${pip_quiet[@]}" --no-deps --force-reinstall "$pkg_source" >/dev/null
    rm -rf -- "$PIP_CACHE_DIR"
fi
"$venv/bin/repic" --version >/dev/null || die "the app does not start from $venv (see the errors above)"

# the icon where the app looks for it when installed (gui/app.py: <prefix>/share/repic-desktop/icons)
icon_src="$repo_root/resources/icons/$APP_ID.svg"
if [ -f "$icon_src" ]; then
    mkdir -p "$venv/share/$APP_ID/icons"
    cp -f "$icon_src" "$venv/share/$APP_ID/icons/$APP_ID.svg"
fi

# ---------------------------------------------------------------------------------------------------
# Menu entry, icon, command links
desktop_quote() { # Exec= quoting of the desktop-entry spec; paths with its special characters are refused
    case "$1" in *[\"\`\$\\]*) die "cannot write a menu entry for a path with \" \` \$ or \\ in it: $1 (use --no-menu)" ;; esac
    printf '"%s"' "$1"
}
if [ "$menu" = 1 ]; then
    make_dir "$bin_dir"
    for cmd in repic repic-train; do
        ln -sfn "$venv/bin/$cmd" "$bin_dir/$cmd"
        record link "$bin_dir/$cmd"
    done
    case ":$PATH:" in *":$bin_dir:"*) ;; *) say "Note: $bin_dir is not on your PATH; the commands are also in $venv/bin." ;; esac

    if [ "$os" = Linux ]; then
        apps="$xdg_data/applications"
        icons="$xdg_data/icons/hicolor/scalable/apps"
        make_dir "$apps"
        make_dir "$icons"
        cp -f "$icon_src" "$icons/$APP_ID.svg"
        record file "$icons/$APP_ID.svg"
        template="$repo_root/resources/$APP_ID.desktop.in"
        exec_line="$(desktop_quote "$venv/bin/repic")"
        # sed replacement text: escape & and the delimiter
        exec_sed="$(printf '%s' "$exec_line" | sed 's/[&|\\]/\\&/g')"
        sed -e "s|@EXEC@|$exec_sed|" -e "s|@ICON@|$APP_ID|" "$template" > "$apps/$APP_ID.desktop.tmp"
        chmod 644 "$apps/$APP_ID.desktop.tmp"
        mv -f "$apps/$APP_ID.desktop.tmp" "$apps/$APP_ID.desktop"
        record file "$apps/$APP_ID.desktop"
        if command -v desktop-file-validate >/dev/null 2>&1; then
            desktop-file-validate "$apps/$APP_ID.desktop" || warn "desktop-file-validate complained (above)"
        fi
        refresh_menus
    else
        # macOS: a minimal .app in ~/Applications that starts the GUI from the environment
        appdir="$HOME/Applications/$APP_NAME.app"
        make_dir "$HOME/Applications"
        rm -rf -- "$appdir"
        mkdir -p "$appdir/Contents/MacOS" "$appdir/Contents/Resources"
        cat > "$appdir/Contents/MacOS/$APP_ID" <<EOF
#!/bin/sh
exec "$venv/bin/repic" gui "\$@"
EOF
        chmod 755 "$appdir/Contents/MacOS/$APP_ID"
        cat > "$appdir/Contents/Info.plist" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
  <key>CFBundleName</key><string>$APP_NAME</string>
  <key>CFBundleDisplayName</key><string>$APP_NAME</string>
  <key>CFBundleIdentifier</key><string>org.repic.desktop</string>
  <key>CFBundleExecutable</key><string>$APP_ID</string>
  <key>CFBundlePackageType</key><string>APPL</string>
  <key>CFBundleIconFile</key><string>$APP_ID.icns</string>
  <key>LSMinimumSystemVersion</key><string>11.0</string>
</dict></plist>
EOF
        # an .icns from the SVG when macOS's own tools can make one (qlmanage renders SVG, sips converts)
        if command -v qlmanage >/dev/null 2>&1 && command -v sips >/dev/null 2>&1; then
            tmp_png="$(mktemp -d)"
            if qlmanage -t -s 512 -o "$tmp_png" "$icon_src" >/dev/null 2>&1 && [ -f "$tmp_png/$APP_ID.svg.png" ]; then
                sips -s format icns "$tmp_png/$APP_ID.svg.png" --out "$appdir/Contents/Resources/$APP_ID.icns" >/dev/null 2>&1 || true
            fi
            rm -rf -- "$tmp_png"
        fi
        record tree "$appdir"
    fi
fi

# the uninstaller: this script, kept beside the environment
cp -f "${BASH_SOURCE[0]}" "$app_dir/install.sh"
chmod 755 "$app_dir/install.sh"
cat > "$app_dir/uninstall.sh" <<EOF
#!/usr/bin/env bash
# Removes $APP_NAME (the app, its menu entry and command links); keeps your library, models and settings.
exec bash "$app_dir/install.sh" --uninstall "\$@"
EOF
chmod 755 "$app_dir/uninstall.sh"
mv -f "$new_manifest" "$manifest"

version="$("$venv/bin/repic" --version 2>/dev/null || true)"
say ""
say "Installed: $version"
if [ "$menu" = 1 ]; then
    if [ "$os" = Linux ]; then say "Start it from your applications menu (\"$APP_NAME\") or with: repic gui"
    else say "Start it from ~/Applications/$APP_NAME.app or with: repic gui"; fi
else
    say "Start it with: \"$venv/bin/repic\" gui"
fi
say "Uninstall with: \"$app_dir/uninstall.sh\" (keeps your library, photos, models and settings)"
