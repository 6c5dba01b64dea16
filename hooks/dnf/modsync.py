# modsync plugin for dnf 4, installed as
#   <python3 sitelib>/dnf-plugins/modsync.py   (Fedora: %{python3_sitelib}, Debian: /usr/lib/python3/dist-packages)
# and enabled by /etc/dnf/plugins/modsync.conf ([main] enabled=1).
#
# After dnf's RPM transaction (kernel %posttrans scriptlets included), this
# plugin describes the kernel packages the transaction brought in and took out
# as JSON and hands it to the engine on stdin:
#   /usr/bin/modsync hook dnf
#   {"in":  [{"name", "version", "release", "arch", "files": [...]}, ...],
#    "out": [...same shape...]}
# "in" are installed/upgraded/reinstalled packages (install_set), "out" the
# removed/replaced ones (remove_set). Every package whose name starts with
# "kernel" is passed on; the engine decides which ones matter and how (a new
# kernel or new headers -> build, a removed kernel -> drop its modules,
# removed headers only -> keep them).
#
# The plugin contains no policy and never fails the dnf run: the engine's
# output goes to stderr (shown with dnf's own output), its exit status and any
# error in here are logged through dnf's logger, nothing is raised.
# With --installroot the engine of that root is run inside it (chroot), the
# way rpm runs the kernel's scriptlets there; a root without modsync is skipped.

import json
import logging
import os
import subprocess
import sys
import tempfile

import dnf

ENGINE = '/usr/bin/modsync'

logger = logging.getLogger('dnf.plugin')


def _describe(pkg, rpmdb_files):
    """One package as the engine reads it."""
    try:
        files = list(pkg.files or ())
    except Exception:  # filelists not loaded, odd repo: fall back below
        files = []
    if not files:
        files = rpmdb_files(pkg)
    return {
        'name': pkg.name,
        'version': pkg.version,
        'release': pkg.release,
        'arch': pkg.arch,
        'files': files,
    }


class Modsync(dnf.Plugin):
    name = 'modsync'

    def transaction(self):
        try:
            self._transaction()
        except KeyboardInterrupt:
            logger.warning('modsync: interrupted; run "modsync autoinstall" to finish the module builds')
        except Exception as e:  # never break dnf after its transaction succeeded
            logger.warning('modsync: kernel module hook failed: %s', e)
            logger.debug('modsync: hook error', exc_info=True)

    def _transaction(self):
        trans = self.base.transaction
        if trans is None:
            return
        root = self.base.conf.installroot or '/'
        rpmdb = _RpmDb(root)
        incoming = [_describe(p, rpmdb.files) for p in _kernel_pkgs(trans.install_set)]
        outgoing = [_describe(p, rpmdb.files) for p in _kernel_pkgs(trans.remove_set)]
        if not incoming and not outgoing:
            return
        doc = json.dumps({'in': incoming, 'out': outgoing})

        cmd = [ENGINE, 'hook', 'dnf']
        if os.path.realpath(root) != '/':
            if not os.access(os.path.join(root, ENGINE.lstrip('/')), os.X_OK):
                logger.debug('modsync: %s not in installroot %s, skipping', ENGINE, root)
                return
            cmd = ['chroot', root] + cmd
        elif not os.access(ENGINE, os.X_OK):
            logger.debug('modsync: %s not installed, skipping', ENGINE)
            return

        logger.debug('modsync: running %s with %s', ' '.join(cmd), doc)
        rc = _run(cmd, doc)
        if rc != 0:
            logger.warning('modsync: "%s" exited with status %d (see the messages above)', ' '.join(cmd), rc)


def _kernel_pkgs(pkgs):
    return sorted((p for p in pkgs if p.name.startswith('kernel')), key=str)


def _run(cmd, stdin_text):
    """Runs cmd with stdin_text on its stdin and both of its output streams
    on our stderr; returns its exit status."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    # The input goes through a file, not a pipe: dnf restores the default
    # SIGPIPE action when its stdout is not a terminal, so writing into a pipe
    # that an engine closed early (usage error, crash) would kill dnf itself.
    with tempfile.TemporaryFile() as stdin:
        stdin.write(stdin_text.encode('utf-8'))
        stdin.flush()
        stdin.seek(0)
        try:
            err = sys.stderr.fileno()
        except Exception:  # stderr replaced by something without a descriptor
            err = None
        if err is not None:
            return subprocess.call(cmd, stdin=stdin, stdout=err, stderr=err)
        proc = subprocess.run(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        sys.stderr.write(proc.stdout.decode('utf-8', 'replace'))
        return proc.returncode


class _RpmDb(object):
    """File lists of installed packages, for packages whose metadata came
    without one."""

    def __init__(self, root):
        self.root = root
        self.ts = None

    def files(self, pkg):
        try:
            import rpm
            if self.ts is None:
                self.ts = rpm.TransactionSet(self.root)
            for hdr in self.ts.dbMatch('name', pkg.name):
                if (hdr['version'], hdr['release'], hdr['arch']) == (pkg.version, pkg.release, pkg.arch):
                    return [f.decode() if isinstance(f, bytes) else f for f in hdr['filenames'] or ()]
        except Exception as e:
            logger.debug('modsync: no file list for %s: %s', pkg, e)
        return []
