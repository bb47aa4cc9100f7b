"""The collection as a whole: embeddings (:mod:`.embed`), similar works and the vector
indexes in the data directory (:mod:`.similar`), near-duplicate pairs (:mod:`.duplicates`)
and suspect labels ranked by confident learning (:mod:`.suspects`)."""
