"""Custom Processing dialog widgets of mmlc (model chooser, labelled dropdowns).

They are attached to parameters through the ``widget_wrapper`` metadata, used only by the
standard algorithm dialog: the Graphical Modeler and the batch dialog get QGIS's own widget for
the same parameter (:class:`.base.StandardDialogWrapper`), and ``processing.run``, ``qgis_process``
and Modeler values stay plain strings.
"""
