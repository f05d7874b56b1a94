"""Top-1 accuracy as an `evaluate` metric module, shipped beside the examples so it loads offline.

`evaluate.load("accuracy")` fetches its script from the Hub; `evaluate.load(<path of this file>)` reads
this one instead and gives the same interface (`add_batch`, `compute`, distributed gathering by
`evaluate`). The value is the fraction of predictions equal to their reference.
"""

import datasets
import evaluate
import numpy as np


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Fraction of predicted class indices equal to the reference class indices.",
            citation="",
            inputs_description="predictions: predicted class indices; references: true class indices.",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions), np.asarray(references)
        if len(references) == 0:
            raise ValueError("accuracy needs at least one prediction")
        return {"accuracy": float((predictions == references).mean())}
