<#
.SYNOPSIS
RePIC Desktop per-user installer for Windows (no administrator rights, nothing outside your profile).

.DESCRIPTION
  powershell -ExecutionPolicy Bypass -File installers\install.ps1            install, or upgrade in place
  powershell -ExecutionPolicy Bypass -File installers\install.ps1 -Yes       the same without questions
  powershell -ExecutionPolicy Bypass -File installers\install.ps1 -Uninstall remove the app; your library,
                                                                             photos, models and settings stay

Checks for Python >= 3.10, makes a private virtual environment in the app's user data folder (the folder
platformdirs gives the app: %LOCALAPPDATA%\RePIC Desktop) under app\, installs the PyTorch build that fits
this machine (NVIDIA GPU -> CUDA build, otherwise the CPU build) and then the app, adds a Start menu
shortcut with the icon, registers an uninstaller under Settings -> Apps, and keeps app\uninstall.ps1.
Re-running upgrades in place; the library, settings, models and adapters live beside app\, not in it.

.PARAMETER Torch
auto (default), cpu or cuda. Also $env:REPIC_TORCH.
.PARAMETER TorchSpec
The pip requirement for torch (default: the pin in requirements.txt). Also $env:REPIC_TORCH_SPEC.
.PARAMETER TorchIndex
The index torch comes from (cpu: https://download.pytorch.org/whl/cpu, cuda: .../whl/cu130). Also $env:REPIC_TORCH_INDEX.
.PARAMETER Source
A checkout folder or a wheel to install (default: this checkout). Also $env:REPIC_SOURCE.
.PARAMETER Python
The interpreter to build the environment from (default: py -3, then python). Also $env:REPIC_PYTHON.
#>
[CmdletBinding()]
param(
    [ValidateSet("auto", "cpu", "cuda")] [string]$Torch = $(if ($env:REPIC_TORCH) { $env:REPIC_TORCH } else { "auto" }),
    [string]$TorchSpec = $env:REPIC_TORCH_SPEC,
    [string]$TorchIndex = $env:REPIC_TORCH_INDEX,
    [string]$Source = $env:REPIC_SOURCE,
    [string]$Python = $env:REPIC_PYTHON,
    [switch]$NoMenu,
    [switch]$Yes,
    [switch]$Uninstall
)
$ErrorActionPreference = "Stop"
Set-StrictMode -Version 3.0

$AppName = "RePIC Desktop"
$AppId = "repic-desktop"
$MinMinor = 10
if ($env:REPIC_YES -eq "1") { $Yes = $true }

# platformdirs.user_data_dir("RePIC Desktop", appauthor=False) on Windows: %LOCALAPPDATA%\RePIC Desktop
$DataDir = Join-Path $env:LOCALAPPDATA $AppName
$AppDir = Join-Path $DataDir "app"
$Venv = Join-Path $AppDir "venv"
$VPy = Join-Path $Venv "Scripts\python.exe"
$StartMenu = Join-Path $env:APPDATA "Microsoft\Windows\Start Menu\Programs"
$Shortcut = Join-Path $StartMenu "$AppName.lnk"
$UninstallKey = "HKCU:\Software\Microsoft\Windows\CurrentVersion\Uninstall\RePICDesktop"

function Say([string]$Text) { Write-Host $Text }
function Die([string]$Text) { Write-Host "install.ps1: error: $Text" -ForegroundColor Red; exit 1 }
function Confirm-Step([string]$Question) {
    if ($Yes) { return $true }
    if (-not [Environment]::UserInteractive -or [Console]::IsInputRedirected) { Die "no console to ask on: run again with -Yes" }
    $r = Read-Host "$Question [Y/n]"
    return ($r -eq "" -or $r -match "^(y|yes)$")
}
function Invoke-Checked([string]$Exe, [string[]]$Arguments) {
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { Die "$Exe $($Arguments -join ' ') failed (exit $LASTEXITCODE)" }
}

# ------------------------------------------------------------------------------------------------------
if ($Uninstall) {
    if (-not (Test-Path $AppDir)) { Say "$AppName is not installed here (no $AppDir)."; exit 0 }
    Say "This removes the app ($AppDir), its Start menu shortcut and its Settings -> Apps entry."
    Say "It keeps your library, reference photos, models, adapters and settings in $DataDir."
    if (-not (Confirm-Step "Uninstall $AppName?")) { Say "Nothing removed."; exit 0 }
    if (Test-Path $Shortcut) { Remove-Item -Force $Shortcut }
    if (Test-Path $UninstallKey) { Remove-Item -Recurse -Force $UninstallKey }
    # This script may be the copy inside app\: PowerShell has read it whole, so removing it is safe.
    Remove-Item -Recurse -Force $AppDir
    if (-not (Get-ChildItem -Force $DataDir -ErrorAction SilentlyContinue)) { Remove-Item -Force $DataDir }
    Say "$AppName is uninstalled."
    if (Test-Path $DataDir) { Say "Your library and models are still in $DataDir." }
    exit 0
}

# ------------------------------------------------------------------------------------------------------
# Python >= 3.10
function Find-Python {
    $candidates = @()
    if ($Python) { $candidates += ,@($Python) } else { $candidates += ,@("py", "-3"); $candidates += ,@("python") }
    foreach ($c in $candidates) {
        $exe = $c[0]; $pre = @($c | Select-Object -Skip 1)
        if (-not (Get-Command $exe -ErrorAction SilentlyContinue)) { continue }
        $path = & $exe @pre -c "import sys; print(sys.executable if sys.version_info >= (3, $MinMinor) else '')" 2>$null
        if ($LASTEXITCODE -eq 0 -and $path) { return $path.Trim() }
    }
    return $null
}
$Py = Find-Python
if (-not $Py) {
    if ($Python) { Die "$Python is not Python 3.$MinMinor or newer" }
    Die "needs Python 3.$MinMinor or newer: install it from python.org (tick 'Add python.exe to PATH') or 'winget install Python.Python.3.12'"
}
$PyVersion = & $Py -c "import sys; print('%d.%d.%d' % sys.version_info[:3])"

# What to install
$RepoRoot = Split-Path -Parent $PSScriptRoot
if (-not $Source) {
    if (-not (Test-Path (Join-Path $RepoRoot "pyproject.toml"))) { Die "not run from a RePIC Desktop checkout: pass -Source DIR|WHEEL" }
    $Source = $RepoRoot
}
if (-not (Test-Path $Source)) { Die "-Source $Source does not exist" }
$Source = (Resolve-Path $Source).Path
$Requirements = $null
foreach ($cand in @((Join-Path $Source "requirements.txt"), (Join-Path $RepoRoot "requirements.txt"))) {
    if ((Test-Path $cand -PathType Leaf)) { $Requirements = $cand; break }
}
$PinnedTorch = $null
if ($Requirements) {
    $match = Select-String -Path $Requirements -Pattern '^torch==' | Select-Object -First 1
    if ($match) { $PinnedTorch = $match.Line }
}

# Which PyTorch: PyPI's Windows torch is CPU-only, so CUDA comes from PyTorch's own index
$GpuNote = $null
$Detected = "cpu"
if (Get-Command nvidia-smi -ErrorAction SilentlyContinue) {
    $line = (& nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>$null | Select-Object -First 1)
    if ($LASTEXITCODE -eq 0 -and $line) { $GpuNote = "NVIDIA GPU found: $line"; $Detected = "cuda" }
    else { $GpuNote = "nvidia-smi is installed but reports no working GPU (is the driver installed?)" }
}
$Build = if ($Torch -eq "auto") { $Detected } else { $Torch }
$TorchReq = if ($TorchSpec) { $TorchSpec } elseif ($PinnedTorch) { $PinnedTorch.Trim() } else { "torch" }
$TorchArgs = @()
if ($TorchSpec) {
    if ($TorchIndex) { $TorchArgs = @("--index-url", $TorchIndex) }
    $TorchDesc = "$TorchReq as given"
} elseif ($Build -eq "cuda") {
    $idx = if ($TorchIndex) { $TorchIndex } else { "https://download.pytorch.org/whl/cu130" }
    $TorchArgs = @("--index-url", $idx)
    $TorchDesc = "CUDA build from $idx (several GB; needs a recent NVIDIA driver)"
} else {
    $idx = if ($TorchIndex) { $TorchIndex } else { "https://download.pytorch.org/whl/cpu" }
    $TorchArgs = @("--index-url", $idx)
    $TorchDesc = "CPU-only build from $idx"
}

Say "$AppName installer"
Say "  Python:      $Py ($PyVersion)"
Say "  install to:  $AppDir"
Say "  app from:    $Source"
if ($GpuNote) { Say "  $GpuNote" }
Say "  PyTorch:     $Build ($TorchDesc)"
Say "               change with -Torch cpu|cuda or -TorchSpec SPEC"
if (Test-Path $Venv) { Say "  (already installed: this upgrades it in place; your library and settings stay)" }
if (-not (Confirm-Step "Install?")) { Say "Nothing installed."; exit 0 }

# ------------------------------------------------------------------------------------------------------
# A checkout is built from a copy: pip builds inside the checkout and setuptools reuses its build\lib,
# so a module deleted since an earlier build would still be installed.
$PkgSource = $Source
$Stage = $null
if (Test-Path $Source -PathType Container) {
    $Stage = Join-Path ([System.IO.Path]::GetTempPath()) ("repic-src-" + [guid]::NewGuid().ToString("N"))
    New-Item -ItemType Directory -Path $Stage | Out-Null
    foreach ($item in @("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in", "README.md", "LICENSE", "repic_desktop", "trainer")) {
        $p = Join-Path $Source $item
        if (Test-Path $p) { Copy-Item -Recurse -Path $p -Destination $Stage -Exclude "__pycache__" }
    }
    $PkgSource = $Stage
}

New-Item -ItemType Directory -Force -Path $AppDir | Out-Null
if ((Test-Path $Venv) -and -not (Test-Path $VPy)) { Remove-Item -Recurse -Force $Venv }
if (-not (Test-Path $VPy)) { Say "Creating the environment..."; Invoke-Checked $Py @("-m", "venv", $Venv) }
# pip's download cache would stay in %LOCALAPPDATA%\pip after an uninstall: keep it in app\ and drop it
$env:PIP_CACHE_DIR = Join-Path $AppDir "pip-cache"
$PipQuiet = @("--disable-pip-version-check", "--no-input")
& $VPy -m pip install @PipQuiet --upgrade pip | Out-Null
Say "Installing PyTorch: $TorchReq $($TorchArgs -join ' ')"
Invoke-Checked $VPy (@("-m", "pip", "install") + $PipQuiet + $TorchArgs + @($TorchReq))
Say "Installing $AppName and its libraries..."
$ReqArgs = @()
if ($Requirements) {
    $filtered = Join-Path $AppDir "requirements.txt"
    Get-Content $Requirements | Where-Object { $_ -notmatch '^torch([=<>!~ ;]|$)' } | Set-Content -Encoding UTF8 $filtered
    $ReqArgs = @("-r", $filtered)
}
Invoke-Checked $VPy (@("-m", "pip", "install") + $PipQuiet + @("--upgrade") + $ReqArgs + @($PkgSource))
Invoke-Checked $VPy (@("-m", "pip", "install") + $PipQuiet + @("--no-deps", "--force-reinstall", $PkgSource))
Remove-Item -Recurse -Force $env:PIP_CACHE_DIR -ErrorAction SilentlyContinue
if ($Stage) { Remove-Item -Recurse -Force $Stage -ErrorAction SilentlyContinue }
$Repic = Join-Path $Venv "Scripts\repic.exe"
& $Repic --version | Out-Null
if ($LASTEXITCODE -ne 0) { Die "the app does not start from $Venv (see the errors above)" }

# The icon: where gui/app.py looks (<prefix>\share\repic-desktop\icons), plus an .ico for the shortcut,
# drawn from the SVG with the Qt that was just installed.
$IconSrc = Join-Path $RepoRoot "resources\icons\$AppId.svg"
$IconDir = Join-Path $Venv "share\$AppId\icons"
New-Item -ItemType Directory -Force -Path $IconDir | Out-Null
$Ico = Join-Path $AppDir "$AppId.ico"
if (Test-Path $IconSrc) {
    Copy-Item -Force $IconSrc (Join-Path $IconDir "$AppId.svg")
    $env:QT_QPA_PLATFORM = "offscreen"
    & $VPy -c @"
import sys
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtCore import Qt
app = QGuiApplication([])
img = QImage(256, 256, QImage.Format.Format_ARGB32)
img.fill(Qt.GlobalColor.transparent)
p = QPainter(img); QSvgRenderer(sys.argv[1]).render(p); p.end()
png = sys.argv[2] + '.png'
img.save(png)
from PIL import Image
Image.open(png).save(sys.argv[2], sizes=[(16, 16), (32, 32), (48, 48), (256, 256)])
"@ $IconSrc $Ico 2>$null
    Remove-Item -Force "$Ico.png" -ErrorAction SilentlyContinue
    Remove-Item Env:\QT_QPA_PLATFORM
}

# Start menu shortcut: pythonw runs the GUI without a console window
if (-not $NoMenu) {
    $shell = New-Object -ComObject WScript.Shell
    $lnk = $shell.CreateShortcut($Shortcut)
    $lnk.TargetPath = Join-Path $Venv "Scripts\pythonw.exe"
    $lnk.Arguments = "-m repic_desktop gui"
    $lnk.WorkingDirectory = $env:USERPROFILE
    $lnk.Description = "Personalized photo captions that name your people and pets"
    if (Test-Path $Ico) { $lnk.IconLocation = "$Ico,0" }
    $lnk.Save()
}

# The uninstaller: this script, kept beside the environment, and an entry under Settings -> Apps
Copy-Item -Force $PSCommandPath (Join-Path $AppDir "install.ps1")
$UninstallPs1 = Join-Path $AppDir "uninstall.ps1"
Set-Content -Encoding UTF8 -Path $UninstallPs1 -Value @"
# Removes $AppName (the app, its Start menu shortcut); keeps your library, models and settings.
& "$(Join-Path $AppDir 'install.ps1')" -Uninstall @args
"@
$Version = (& $Repic --version).Trim() -replace '^repic ', ''
New-Item -Force -Path $UninstallKey | Out-Null
Set-ItemProperty -Path $UninstallKey -Name DisplayName -Value $AppName
Set-ItemProperty -Path $UninstallKey -Name DisplayVersion -Value $Version
Set-ItemProperty -Path $UninstallKey -Name Publisher -Value "RePIC Desktop developers"
Set-ItemProperty -Path $UninstallKey -Name InstallLocation -Value $AppDir
Set-ItemProperty -Path $UninstallKey -Name UninstallString -Value "powershell.exe -NoProfile -ExecutionPolicy Bypass -File `"$UninstallPs1`" -Yes"
Set-ItemProperty -Path $UninstallKey -Name NoModify -Value 1 -Type DWord
Set-ItemProperty -Path $UninstallKey -Name NoRepair -Value 1 -Type DWord
if (Test-Path $Ico) { Set-ItemProperty -Path $UninstallKey -Name DisplayIcon -Value $Ico }

Say ""
Say "Installed: repic $Version"
if (-not $NoMenu) { Say "Start it from the Start menu (`"$AppName`") or with: `"$Repic`" gui" }
else { Say "Start it with: `"$Repic`" gui" }
Say "Uninstall from Settings -> Apps, or with: powershell -ExecutionPolicy Bypass -File `"$UninstallPs1`""
