"""The Cockpit page: its files (``page/``) and ``hotsync cockpit install`` (:mod:`.install`).

The page runs only the project's commands through ``cockpit.spawn``; it has no other way into the host.
"""
