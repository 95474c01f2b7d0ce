#!/usr/bin/env bash
# Orthanc with its DICOMweb and GDCM plugins from Debian's packages, for `make bench` only.
# The benchmark starts Orthanc by hand with its own configuration on free loopback ports;
# the packaged system service is never used, so it must not start (or stay) running.
set -euo pipefail
pkgs=(orthanc orthanc-dicomweb orthanc-gdcm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v storescu >/dev/null 2>&1 || missing+=(dcmtk)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "orthanc-setup: need ${missing[*]} (apt-get as root); run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  # A policy-rc.d that answers 101 keeps the postinst from starting the service (invoke-rc.d
  # and deb-systemd-invoke both ask it); put one in place only for this install.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Whatever happened before (an older install, a reboot with the unit enabled), the system
# service must not hold ports 4242/8042 or the CPU while we measure.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  if systemctl is-active --quiet orthanc 2>/dev/null; then
    echo "orthanc-setup: stopping the system Orthanc service (the benchmark runs its own)" >&2
    systemctl stop orthanc || true
  fi
elif [ -x /etc/init.d/orthanc ] && /etc/init.d/orthanc status >/dev/null 2>&1; then
  echo "orthanc-setup: stopping the system Orthanc service (the benchmark runs its own)" >&2
  /etc/init.d/orthanc stop >/dev/null || true
fi

for so in libOrthancDicomWeb.so libOrthancGdcm.so; do
  [ -e "/usr/share/orthanc/plugins/$so" ] || { echo "orthanc-setup: /usr/share/orthanc/plugins/$so is missing" >&2; exit 1; }
done
