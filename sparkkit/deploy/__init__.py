"""Apply a release to one host under its lock: preflight, upload, start wave by wave, switch,
restore on failure; rollback, down, status and diff are the same operations aimed elsewhere.
Every command ends in an ``outcome.DeployResult``: an enum outcome that carries its exit code.

Modules, each importing only those before it: ``drift`` (pure: what the containers run against
what the current release says), ``plan`` (pure: what to do), ``outcome`` (pure:
what happened, the exit-code table), ``session`` (the executor, config, stage timing, audit),
``lock``, ``activate`` (waves, health wait, images), ``restore`` (after a failure or Ctrl-C),
``apply`` (HostOps: deploy, rollback, down, status); ``diff`` stands apart.

May import: ``release``, ``host``, ``inventory``, ``errors``.
"""
