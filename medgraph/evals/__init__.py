"""Answer evaluations: PubMedQA yes/no/maybe, MedQA-style multiple choice, ALCE-style citations."""
