"""Near-real-time sync: the notifier watches what the sync ships and pushes each settled batch.

* :mod:`.debounce` -- when a batch is settled (pure logic, a fake clock in tests).
* :mod:`.notifier` -- watchdog's inotify observer, filtered, feeding the debouncer.
* :mod:`.wiring` -- what to watch and how a batch is pushed (the sync's lists, lock and rsync).
* :mod:`.settings` -- every knob of the notifier and its default, written once.
* :mod:`.scheduler` -- ``hotsync daemon``: the scheduled full sync and the notifier in one process.

The sync never imports this package; this package uses the sync's public pieces. The notifier's status
file is the sync's (:mod:`hotsync_events.sync.notifier_status`): ``hotsync status`` and the fence read it
without loading watchdog or this package.
"""
