# Runs once inside `docker build` (see Dockerfile). With /tmp/build/wheels present (an offline build)
# pip installs only from there; without, from PyPI.
set -eu
ctx=/tmp/build
OFFLINE=0
[ -d "$ctx/wheels" ] && OFFLINE=1
venv=/opt/sandbox/venv
if ! command -v iptables >/dev/null 2>&1; then
  # python:*-slim has no iptables; the init container of `interception: iptables` needs it.
  [ "$OFFLINE" = 1 ] && { echo "install.sh: the offline base image has no iptables" >&2; exit 1; }
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iptables
  rm -rf /var/lib/apt/lists/*
fi
python3 -m venv "$venv"
if [ "$OFFLINE" = 1 ]; then
  nice -n 10 "$venv/bin/pip" install -q --no-cache-dir --no-index --find-links "$ctx/wheels" -r "$ctx/requirements.txt"
else
  nice -n 10 "$venv/bin/pip" install -q --no-cache-dir -r "$ctx/requirements.txt"
fi
# The package itself is copied, not built: no setuptools needed offline, and the source is what was hashed.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp -r "$ctx/sandbox" "$site/sandbox"
# The host's compiled data path, when it had one: mypyc's shared library goes beside the package (the
# compiled modules came with sandbox/proxy). sandbox/proxy/native.py decides at start whether it runs.
for lib in "$ctx"/native/*.so; do
  [ -f "$lib" ] && cp "$lib" "$site/"
done
nice -n 10 "$venv/bin/python" -m compileall -q "$site/sandbox"
printf '#!%s\nimport sys\nfrom sandbox.cli import main\nsys.exit(main())\n' "$venv/bin/python" > "$venv/bin/sandbox"
chmod 755 "$venv/bin/sandbox"
mkdir -p /opt/sandbox/samples
cp -r "$ctx/samples/." /opt/sandbox/samples/
install -m 755 "$ctx/probe" /usr/local/bin/sandbox-probe
# The sidecar runs as istio-proxy (uid 1337, as in Istio): the iptables rules let its own traffic out.
grep -q '^istio-proxy:' /etc/group || echo 'istio-proxy:x:1337:' >> /etc/group
grep -q '^istio-proxy:' /etc/passwd || echo 'istio-proxy:x:1337:1337:istio-proxy:/nonexistent:/usr/sbin/nologin' >> /etc/passwd
# Every container starts as a copy of this top layer under the vfs storage driver, so what no role
# needs goes: docs, locales, pip, and (offline) the base's prometheus and its web assets, which the
# prometheus service runs from the base image itself.
rm -rf "$ctx" /root/.cache /usr/share/doc /usr/share/man /usr/share/locale /usr/share/info \
  "$venv/bin/pip" "$venv/bin/pip3" "$venv"/bin/pip3.* "$site"/pip "$site"/pip-* "$site"/setuptools "$site"/setuptools-*
if [ "$OFFLINE" = 1 ]; then
  rm -rf /usr/bin/prometheus /usr/bin/promtool /usr/share/prometheus /usr/share/javascript /usr/share/nodejs
fi
