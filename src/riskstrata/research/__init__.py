"""Research studies built on the fitted models (issue 16: the L* study)."""

from riskstrata.research.lstar_study import LStarStudy, StudyPanel, lstar_study, stratified_sample
from riskstrata.research.service import panel_from_result, panel_from_store, run_lstar_study

__all__ = ["LStarStudy", "StudyPanel", "lstar_study", "stratified_sample", "panel_from_result",
           "panel_from_store", "run_lstar_study"]
