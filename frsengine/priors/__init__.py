"""Facial priors that work offline (paper Sec. 3.2; docs/priors.md): a dlib landmark teacher,
priors rasterised from its landmarks (heatmaps, parsing maps, component boxes), a component
dictionary looked up by soft nearest-atom attention, and a small student network that predicts
parsing maps and heatmaps from degraded faces.

Submodules import torch/dlib lazily where they can; import what you need:

    from frsengine.priors.landmarks import detect_landmarks, TeacherCache
    from frsengine.priors.rasterize import heatmaps, parsing_map, component_boxes
    from frsengine.priors.dictionary import DictionaryLookup, load_dictionary
    from frsengine.priors.student import StudentPriorNet
"""
