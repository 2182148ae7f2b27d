"""The reference log-prob cache's data key: equal exactly when the tokenized rows are."""

from datasets import Dataset

from harness.methods.refcache import dataset_fingerprint

ROWS = [
    {"prompt_ids": [1, 2], "chosen_ids": [3, 4, 5], "rejected_ids": [6]},
    {"prompt_ids": [7], "chosen_ids": [8], "rejected_ids": [2, 3]},
    {"prompt_ids": [4, 4, 4], "chosen_ids": [], "rejected_ids": [1]},
]


def key(rows) -> str:
    return dataset_fingerprint(Dataset.from_list(rows))


def test_the_same_rows_give_the_same_key_however_the_dataset_holds_them():
    stored = Dataset.from_list(ROWS[::-1] + [ROWS[0]])
    # an indices mapping (select, shuffle, filter: what TRL's preparation leaves) is read through
    selected = stored.select([3, 1, 0])
    assert dataset_fingerprint(selected) == key(ROWS)
    texts = Dataset.from_list([r | {"prompt": "x"} for r in ROWS])  # other columns do not count
    assert dataset_fingerprint(texts) == key(ROWS)


def test_every_change_of_the_token_ids_changes_the_key():
    changed = {
        "an id": [ROWS[0] | {"chosen_ids": [3, 4, 0]}, *ROWS[1:]],
        "an id moved to the next row": [
            ROWS[0] | {"rejected_ids": []},
            ROWS[1] | {"rejected_ids": [6, 2, 3]},
            ROWS[2],
        ],
        "an id moved to another column": [
            ROWS[0] | {"chosen_ids": [3, 4], "rejected_ids": [5, 6]},
            *ROWS[1:],
        ],
        "the row order": [ROWS[1], ROWS[0], ROWS[2]],
        "a row dropped": ROWS[:2],
    }
    keys = {what: key(rows) for what, rows in changed.items()}
    assert key(ROWS) not in keys.values()
    assert len(set(keys.values())) == len(keys)
