"""Split one input across processes or machines, and join their outputs back in input order.

Record ``i`` (0-based, counting every record, bad ones too) belongs to shard ``i % N``, so N
runs of ``khabar predict --num-shards N --shard-index I`` cover every row exactly once, each
writing its own part. Under ``accelerate launch`` (or torchrun) N and I default to the
process's ``WORLD_SIZE`` and ``RANK``. Every record carries the input ``line`` it came from,
and :func:`merge_parts` (``khabar merge``) streams the parts back into input order by it.

Example:
    >>> Shard(count=2, index=0).output_path("preds.jsonl")
    'preds.shard-0-of-2.jsonl'
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from inference.batch.atomic import renamed_into_place
from inference.batch.fingerprint import difference
from inference.batch.formats import OUTPUT_FIELDS, UsageError, file_format
from inference.batch.input_checks import same_file
from inference.batch.locking import read_run_file
from inference.batch.provenance import model_difference
from inference.batch.reading import read_rows
from inference.batch.writing import RecordWriter


@dataclass(frozen=True)
class Shard:
    """This process's share of the input: record ``i`` belongs to shard ``i % count``.

    Example:
        >>> shard = Shard(count=3, index=1)
        >>> [i for i in range(7) if shard.holds(i)], shard.output_path("out/preds.jsonl")
        ([1, 4], 'out/preds.shard-1-of-3.jsonl')
    """

    count: int = 1
    index: int = 0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise UsageError(f"--num-shards {self.count}: must be at least 1")
        if not 0 <= self.index < self.count:
            raise UsageError(f"--shard-index {self.index}: must be in 0..{self.count - 1} for {self.count} shards")

    def holds(self, row_index: int) -> bool:
        """Whether the record at 0-based position ``row_index`` is this shard's."""
        return row_index % self.count == self.index

    def size(self, total_rows: int) -> int:
        """How many of ``total_rows`` records fall in this shard."""
        return len(range(self.index, total_rows, self.count))

    def output_path(self, path: str) -> str:
        """Where this shard writes: ``path`` itself when unsharded or stdout, else a numbered part."""
        if self.count == 1 or path == "-":
            return path
        part = Path(path)
        return str(part.with_name(f"{part.stem}.shard-{self.index}-of-{self.count}{part.suffix}"))


def shard_from_env(num_shards: int | None, shard_index: int | None) -> Shard:
    """The shard from the flags, else from ``WORLD_SIZE``/``RANK`` as set by ``accelerate launch`` or torchrun.

    Example:
        >>> shard_from_env(4, 2)
        Shard(count=4, index=2)
    """
    if (num_shards is None) != (shard_index is None):  # half a pair would silently use the launcher's other half
        given = "--num-shards" if num_shards is not None else "--shard-index"
        raise UsageError(f"{given}: give --num-shards and --shard-index together")
    if num_shards is not None:
        return Shard(num_shards, shard_index)
    count, index = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0)
    if not 0 <= index < max(count, 1):
        raise UsageError(f"environment RANK={index} is not in 0..{count - 1} for WORLD_SIZE={count}")
    return Shard(count, index)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not a whole number") from None


def device_for_rank(device: str) -> str:
    """Give each process under ``accelerate launch`` its own GPU (``cuda:LOCAL_RANK``) when asked for ``auto``.

    Example:
        >>> device_for_rank("cpu")
        'cpu'
    """
    local_rank = os.environ.get("LOCAL_RANK")
    if device != "auto" or local_rank is None or _env_int("WORLD_SIZE", 1) < 2:
        return device
    import torch

    return f"cuda:{local_rank}" if torch.cuda.is_available() else device


def merge_parts(parts: list[str], output: str, overwrite: bool = False, allow_missing: bool = False) -> int:
    """Join shard outputs (JSONL, CSV or TSV) into ``output`` in input order; return the record count.

    Each part is already in input order, so this is a streaming k-way merge on ``line``.
    ``output`` appears whole or not at all (a temporary file renamed into place), and an
    existing one is replaced only with ``overwrite``. Parts named ``*.shard-I-of-N.*`` must all be
    there (their rows would be missing without a word) unless ``allow_missing``.

    Example:
        >>> import tempfile, pathlib
        >>> tmp = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (tmp / "a.jsonl").write_text('{"id": "x", "line": 1}\\n{"id": "z", "line": 3}\\n')
        >>> _ = (tmp / "b.jsonl").write_text('{"id": "y", "line": 2}\\n')
        >>> merge_parts([str(tmp / "a.jsonl"), str(tmp / "b.jsonl")], str(tmp / "all.jsonl"))
        3
        >>> [line[8] for line in (tmp / "all.jsonl").read_text().splitlines()]
        ['x', 'y', 'z']
    """
    for part in parts:
        if Path(part).resolve() == Path(output).resolve() or same_file(part, output):
            raise UsageError(f"-o {output}: is also one of the parts to merge ({part}); write to a new file")
    if not allow_missing and (missing := missing_shards(parts)):
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UsageError(
            f"PART {missing[0]}{more}: not given, so its rows would be left out; add the missing shards, "
            "or --allow-missing to merge only the parts given"
        )
    _check_one_run(parts)
    if output != "-":
        _check_output_path(output, overwrite)
    fields = _merged_fields(parts) if output.lower().endswith((".csv", ".tsv")) else list(OUTPUT_FIELDS)
    if output == "-":
        return _write_merged(parts, output, fields)
    file_format(output, "-o")  # an unknown suffix is reported before the parts are read
    with renamed_into_place(output) as temp:
        try:
            return _write_merged(parts, temp, fields)
        except UsageError as exc:  # name the file the user asked for, not the temporary one
            raise UsageError(str(exc).replace(temp, output)) from None


def _check_one_run(parts: list[str]) -> None:
    """Refuse parts whose run files say they were written from other inputs, models, settings or tasks.

    The shards of one job share all of these; parts of two jobs would merge into one file mixing
    two models' answers, or rows of two inputs. A part without a run file (copied away from it)
    cannot be checked and is taken as it is.
    """
    noted = [(part, info) for part in parts if (info := read_run_file(part))]
    if not noted:
        return
    first, base = noted[0]
    for part, info in noted[1:]:
        change = _run_difference(base, info)
        if change:
            raise UsageError(
                f"PART {part}: not from the same run as {first} ({change}); merging would mix them in one file"
            )


def _run_difference(base: dict, other: dict) -> str | None:
    """How the run noted in ``other`` differs from ``base``'s: input, id column, tasks, models or settings."""
    if difference(base.get("input"), other.get("input")):
        return "another input: its size or SHA-256 differs"
    if base.get("id_column", "id") != other.get("id_column", "id"):
        return f"--id-column {other.get('id_column')}, not {base.get('id_column')}"
    models, others = base.get("models") or {}, other.get("models") or {}
    if models and others and set(models) != set(others):
        return f"the {' and '.join(sorted(others))}, not the {' and '.join(sorted(models))}"
    for kind in sorted(set(models) & set(others)):
        # Compared this way round, the message reads as this part's run: "written with X, not <the first's>".
        change = model_difference(kind, others[kind], models[kind])
        if change and change.endswith("(its files differ)"):
            return f"written by the {kind} {others[kind].get('model')} with other files"
        if change:
            return change.removeprefix("it was ")
    return None


_SHARD_NAME = re.compile(r"^(?P<stem>.*)\.shard-(?P<index>\d+)-of-(?P<count>\d+)(?P<suffix>\.[^.]*)?$")


def missing_shards(parts: list[str]) -> list[str]:
    """The names of the ``*.shard-I-of-N.*`` parts that ``parts`` lack, for each sharded output they come from.

    Example:
        >>> missing_shards(["out/p.shard-0-of-3.jsonl", "p.shard-2-of-3.jsonl", "other.jsonl"])
        ['p.shard-1-of-3.jsonl']
    """
    present: dict[tuple[str, int, str], set[int]] = {}
    for part in parts:
        if found := _SHARD_NAME.match(Path(part).name):
            key = (found["stem"], int(found["count"]), found["suffix"] or "")
            present.setdefault(key, set()).add(int(found["index"]))
    return [
        f"{stem}.shard-{index}-of-{count}{suffix}"
        for (stem, count, suffix), indices in present.items()
        for index in range(count)
        if index not in indices
    ]


def _check_output_path(output: str, overwrite: bool) -> None:
    """Refuse, before any part is read, an output that exists (without ``overwrite``) or cannot be created."""
    path = Path(output)
    if path.is_dir():
        raise UsageError(f"-o {output}: is a directory; name a file in it")
    if path.exists() and not overwrite:
        raise UsageError(f"-o {output}: already exists; add --overwrite to replace it")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"-o {output}: no such directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"-o {output}: cannot write in {parent} (permission denied)")


def _write_merged(parts: list[str], output: str, fields: list[str]) -> int:
    merged = heapq.merge(*(_part_records(part) for part in parts), key=lambda pair: pair[0])
    count, previous = 0, None
    with RecordWriter(output, fields, append=False, resumable=False) as writer:
        for line, record, part in merged:
            if previous is not None and line == previous[0]:
                raise UsageError(f"line {line} is in both {previous[1]} and {part}; were the shards run twice?")
            writer.write([record])
            previous, count = (line, part), count + 1
    return count


def _part_records(part: str) -> Iterator[tuple[int, dict, str]]:
    from_csv = not part.lower().endswith((".jsonl", ".ndjson"))
    last = 0
    for row in read_rows(part, flag="PART"):
        if row.problem or not row.fields:
            raise UsageError(f"{part} line {row.line}: {row.problem or 'empty record'}")
        record = _from_csv(row.fields) if from_csv else row.fields
        line = record.get("line")
        if not isinstance(line, int) or isinstance(line, bool):
            raise UsageError(f"{part} line {row.line}: no 'line' field; was it written by khabar predict?")
        if line <= last:
            raise UsageError(f"{part} line {row.line}: input line {line} comes after {last}; parts must stay in order")
        last = line
        yield line, record, part


def _from_csv(fields: dict) -> dict:
    """Undo CSV's flattening: numbers back to numbers, empty result cells back to absent."""
    record = {k: v for k, v in fields.items() if k not in OUTPUT_FIELDS or v != ""}
    for name, kind in (("line", int), ("topic_score", float)):
        try:
            record[name] = kind(record[name])
        except (KeyError, ValueError):
            pass
    return record


def _merged_fields(parts: list[str]) -> list[str]:
    """The CSV columns of the merged file: the record fields present, then kept columns, in first-seen order."""
    seen: dict[str, None] = {}
    for part in parts:
        for row in read_rows(part, flag="PART"):
            seen.update(dict.fromkeys(row.fields or {}))
    return [f for f in OUTPUT_FIELDS if f in seen] + [f for f in seen if f not in OUTPUT_FIELDS]
