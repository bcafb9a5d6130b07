"""The batch tool behind ``khabar predict`` and ``khabar merge``: files of articles in, files of records out.

The library API (:mod:`inference.api`, :class:`~inference.classifier.Classifier`,
:class:`~inference.summarizer.Summarizer`) works on texts in memory; this package adds what a
long run over files needs:

* :mod:`~inference.batch.formats`: file formats, the record fields, the usage error;
* :mod:`~inference.batch.reading`, :mod:`~inference.batch.writing`, :mod:`~inference.batch.resume`:
  input rows in, records out, and ``--resume`` onto an earlier output;
* :mod:`~inference.batch.checks` and :mod:`~inference.batch.loop`: each row checked, batches through the models;
* :mod:`~inference.batch.shards`: splitting a run across processes and merging the parts;
* :mod:`~inference.batch.input_checks`, :mod:`~inference.batch.output_guard`, :mod:`~inference.batch.locking`,
  :mod:`~inference.batch.fingerprint`, :mod:`~inference.batch.atomic`, :mod:`~inference.batch.safe_records`,
  :mod:`~inference.batch.memory`: what keeps a long run's files and memory safe.
"""
