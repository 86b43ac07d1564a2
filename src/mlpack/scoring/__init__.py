"""`mlpack score`: a collection scored with a model wheel, locally, on Spark, or as documents arrive.

Nothing is imported here: `scoring.worker` is pickled by value onto Spark executors that have no
mlpack, and importing it must not pull in the rest of the package.
"""
