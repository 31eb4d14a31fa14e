"""Every hook a hotsync plugin can implement.

Hooks are called with keyword arguments. A plugin implements a hook by defining a function of the same
name marked with ``@hotsync_events.hookimpl``; it may take any subset of the arguments named here. Every
hook is given ``root``, the :class:`~hotsync_events.paths.Root` the call is about (look only under it,
never at ``/``); a hook written before it was offered, without that argument, works as it did.

Registration hooks (those that return objects from :mod:`hotsync_events.types`) are called once per
plugin by the core (:meth:`~hotsync_events.manager.HotsyncPluginManager.registered`, the one collector),
which records which plugin gave what, validates it, and sorts the results by ``(priority, name)``; the
order pluggy calls plugins in never matters. A registration hook returns an iterable (a list, or ``yield``
its items) or None. A hook that raises, or returns something that is not the type it registers, is that
plugin's error: reported by plugin and hook name, its items left out, the other plugins unaffected. One
name given by two plugins is a :class:`~hotsync_events.manager.RegistrationError` naming both.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from hotsync_events import NAME
import pluggy

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from hotsync_events.configdb import ConfigDB
    from hotsync_events.paths import Root
    from hotsync_events.types import (Action, Dump, HealthCheck, PromoteStep, SchemaFile, Service, SyncPath,
                                      Template)

hookspec = pluggy.HookspecMarker(NAME)


# --- presence -------------------------------------------------------------------------------------
@hookspec
def hotsync_detect(root: Root, db: ConfigDB) -> bool | None:
    """Return whether this plugin's package is present on the host (its files, or its config db keys).

    Called before every other registration hook is collected (and by ``hotsync plugins``). When it
    returns False the plugin is inactive: the core drops everything its other hooks would return, so a
    box without Nextcloud ships no Nextcloud paths. A plugin without this hook, or returning None, is
    always active. Look only under *root* (``root.join("/usr/share/nextcloud")``), never at ``/``.

    :param root: the host's :class:`~hotsync_events.paths.Root`.
    :param db: the ``configuration`` database (read only).
    """


# --- configuration database ----------------------------------------------------------------------
@hookspec
def hotsync_config_schema(root: Root) -> Iterable[SchemaFile] | None:
    """Return the configspec files that extend the config databases with this plugin's keys and props.

    Called when plugins are loaded for an event and by ``hotsync plugins``; the files are installed
    under the root so that ``config setprop`` validates against them without loading plugins. A prop
    that two plugins define stops start-up naming both.

    :param root: the :class:`~hotsync_events.paths.Root` the call is about.
    """


# --- events ----------------------------------------------------------------------------------------
@hookspec
def hotsync_actions(db: ConfigDB, root: Root) -> Iterable[Action] | None:
    """Return the actions this plugin contributes, to any event (``Action.event`` names it).

    Called each time an event is planned (``signal-event``, ``signal-event --list``). The core mixes
    them with the executables of ``<root>/etc/hotsync/events/<event>/`` and the two implicit steps
    (templates at priority 5, services at 90) and runs all in ``(priority, name)`` order. Two plugins
    giving one event the same action name is an error naming both.

    :param db: the ``configuration`` database (read it; an action writes through its context).
    :param root: the :class:`~hotsync_events.paths.Root` the call is about.
    """


@hookspec
def hotsync_template_dirs(root: Root) -> Iterable[Path] | None:
    """Return directories of Mako fragments laid out as ``<dir>/<target path>/<NN-name>``.

    Called when templates are expanded. A fragment here overrides a core fragment of the same name
    and is overridden by ``<root>/etc/hotsync/templates-custom``.

    :param root: the :class:`~hotsync_events.paths.Root` the call is about.
    """


@hookspec
def hotsync_templates(db: ConfigDB, root: Root) -> Iterable[Template] | None:
    """Return the files this plugin renders: target path, owner, group, mode, events, services.

    Called when an event is planned and by ``expand-template``.

    :param root: the :class:`~hotsync_events.paths.Root` the call is about.
    """


@hookspec
def hotsync_services(db: ConfigDB, root: Root) -> Iterable[Service] | None:
    """Return the services this plugin owns and what each event does to them.

    Called by the service-adjust step of an event (priority 90) and by ``hotsync services``.

    :param root: the :class:`~hotsync_events.paths.Root` the call is about.
    """


# --- sync ------------------------------------------------------------------------------------------
@hookspec
def hotsync_sync_paths(db: ConfigDB, root: Root) -> Iterable[SyncPath] | None:
    """Return the paths this plugin's application needs on the slave, and what to keep out.

    Called by every push (``hotsync sync``, the notifier) and by ``hotsync paths``. Includes from all
    plugins and the sysadmin's ``include.d`` lists are merged; two plugins may name the same path.

    :param root: the :class:`~hotsync_events.paths.Root` the call is about.
    """


@hookspec
def hotsync_dumps(db: ConfigDB, root: Root) -> Iterable[Dump] | None:
    """Return the database dumps to take before each push (they are shipped with it).

    Called by ``hotsync sync`` on the master unless ``hotsync databases`` is disabled, and by
    ``hotsync restore-databases`` / the promote on the slave (to restore them). Each Dump is run in
    ``(priority, name)`` order (:mod:`hotsync_events.sync.databases` does it for the restore). ``run``
    returns None or raises; ``restore`` loads the dump (started server, row counts checked) or raises.
    A dump file should be self-contained (data, users, manifest) so a push ships it whole or not at
    all; the built-in plugins' helpers for MariaDB and PostgreSQL do that.

    :param root: the :class:`~hotsync_events.paths.Root` the call is about.
    """


# --- promote ---------------------------------------------------------------------------------------
@hookspec
def hotsync_promote_steps(db: ConfigDB, root: Root) -> Iterable[PromoteStep] | None:
    """Return the steps that make this plugin's application take over when the slave is promoted.

    Called by ``hotsync-promote`` after the shipped config database is applied and the databases are
    restored (``Dump.restore``), and by ``hotsync-promote --dry-run`` to show the plan. The core runs
    every plugin's steps in ``(priority, name)`` order; two plugins giving a step the same name is an
    error naming both. Work that belongs after ``signal-event post-restore-data`` is an
    :class:`~hotsync_events.types.Action` on event ``post-restore-data`` (``hotsync_actions``).

    :param db: the ``configuration`` database as it is after the promote applied the master's copy.
    :param root: the :class:`~hotsync_events.paths.Root` the call is about.
    """


# --- drill -----------------------------------------------------------------------------------------
@hookspec
def hotsync_health_checks(db: ConfigDB, root: Root) -> Iterable[HealthCheck] | None:
    """Return the checks that tell whether this plugin's application works after a takeover.

    Called by ``hotsync drill`` on the slave: inside a throw-away overlay of its copy (private mount, pid
    and network namespaces, loopback only), after the promote ran there and started the services. Each
    :class:`~hotsync_events.types.HealthCheck` is run in ``(priority, name)`` order in a child process with
    its own ``timeout``; ``run(ctx)`` gets an :class:`~hotsync_events.types.ActionContext` (event
    ``drill``) and passes as every ``run`` does (None, True or 0; a string is the reason it failed). A
    check only looks (a port answers, a query returns rows, a file parses): it changes nothing. Two
    plugins giving a check the same name is an error naming both. The core adds its own checks (named
    ``core-...``): every shipped dump restored with its row counts, the configuration database valid, the
    services up.

    :param db: the ``configuration`` database as it is after the promote applied the master's copy.
    :param root: the :class:`~hotsync_events.paths.Root` the call is about (the drill's overlay).
    """
