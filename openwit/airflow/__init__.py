"""openwit on Airflow 3: what the DAG files in ``airflow_dags/`` call.

The DAG files only wire tasks together; the logic lives here so that it is tested without
a scheduler and installed with openwit (``pip install "openwit[airflow]"`` on the workers):

- :mod:`.settings`   -- deployment settings, read from the environment at parse time
- :mod:`.requests`   -- a build run's params -> a checked, pinned build config
- :mod:`.pipeline_main` -- the Beam operator's ``py_file``: one build stage, or the query list
- :mod:`.operators`  -- the Beam operator that runs a build step, runner from the params
- :mod:`.results`    -- funnel counts for XCom and logs, the build's validation, asset extras
- :mod:`.querylist`  -- the optional query-list rebuild, skipped when its inputs are unchanged
- :mod:`.training`   -- training run directories, the torchrun command line, checkpoints
- :mod:`.assets`     -- the asset aliases the DAGs publish and schedule on
- :mod:`.params`     -- the params the audit and the training share
- :mod:`.build_tasks`, :mod:`.audit_tasks`, :mod:`.train_tasks` -- the DAGs' tasks

Only :mod:`.operators`, :mod:`.assets`, :mod:`.params` and the ``*_tasks`` modules import
Airflow at module level; none imports Beam, Arrow or torch there, so a DAG file parses fast,
and nothing outside this package imports Airflow at all (``pip install openwit`` does not
need it).
"""
