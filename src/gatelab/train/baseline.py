"""A non-recurrent reference for the sentiment tasks: bag-of-words logistic regression
(scikit-learn, the ``baseline`` extra), on the same texts, the same split and the same tokeniser.

``python -m gatelab.train.baseline drugs`` prints its test accuracy.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..data import load_drug_reviews, load_tweets, tokenize
from ..errors import UsageError
from ..extras import require


def bow_logistic_regression(task: str = "drugs", data_path: str | Path | None = None,
                            C: float = 1.0) -> dict[str, float]:
    """Test accuracy of a logistic regression on word counts (unigrams, the classic bag of
    words, scikit-learn's default ``C=1``, nothing tuned on the test set) and the majority
    class rate for comparison."""
    require("baseline", "the bag-of-words baseline")
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    load = {"drugs": load_drug_reviews, "tweets": load_tweets}.get(task)
    if load is None:
        raise UsageError(f"the bag-of-words baseline is for 'drugs' or 'tweets', not {task!r}")
    train, test = load("train", data_path), load("test", data_path)
    vec = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None)
    xtr, xte = vec.fit_transform(train.texts), vec.transform(test.texts)
    clf = LogisticRegression(C=C, max_iter=2000).fit(xtr, train.labels)
    acc = float((clf.predict(xte) == test.labels).mean())
    majority = max(test.labels.count(c) for c in set(test.labels)) / len(test.labels)
    return {"accuracy": acc, "majority": majority, "n_train": len(train), "n_test": len(test)}


if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else "drugs"
    r = bow_logistic_regression(name)
    print(f"{name}: bag-of-words logistic regression: test accuracy {r['accuracy']:.4f} "
          f"(majority class {r['majority']:.4f}; {r['n_train']} train / {r['n_test']} test)")
