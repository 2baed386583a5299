"""funrec_cli: the ``funrec`` command.

``funrec record`` records a rollout of a gymnasium environment into a run
directory (video, trajectory store, episode statistics, contact sheet);
``funrec inspect PATH`` describes a video, a trajectory store or a run
directory. Both are thin shells over ``funrec``, ``funrec.writers`` and
``funrec_torchrl``. See docs/cli.md.
"""
