"""The master-to-slave push: lock, lists, dumps, guards, rsync through TLS, status and mail.

The core of HotSync's data path. It knows no application: what to ship comes from the plugins
(``hotsync_sync_paths``, ``hotsync_dumps``) and from the sysadmin's ``include.d``/``exclude.d`` lists.

* :mod:`.push` -- one ``hotsync sync``: :func:`~.push.run_sync`.
* :mod:`.lock` -- one push at a time, later triggers coalesce into one follow-up.
* :mod:`.lists` -- what goes and what never goes.
* :mod:`.rsync` -- the rsync command line and how to read its output.
* :mod:`.guards` -- mass deletion and vanished sources stop a push before it changes anything.
* :mod:`.tls` -- the slave's key and certificate, the master's pin (trust on first use).
* :mod:`.status` -- the status file both sides keep and ``hotsync status`` prints.
* :mod:`.mail` -- one mail on the first failure, one on recovery.
* :mod:`.xfer` -- the slave's rsync daemon hooks (refuse, record).
* :mod:`.policy`, :mod:`.peercopy` -- what a push may write on the slave; the master's configuration copy.
* :mod:`.fence` -- the pair's epoch, the fence, the re-pair of a demoted master.
* :mod:`.databases` -- the plugins' dumps (taken before every push) and their restore.

The sync never imports :mod:`hotsync_events.realtime`: the notifier builds on the sync, not the reverse.
"""
