"""From a trained model to text and scores: search (search.py), translating lines
(translator.py), BLEU and chrF (scoring.py), and export to CTranslate2 (export.py)."""
