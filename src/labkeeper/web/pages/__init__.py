"""Page modules: each defines `router` (an APIRouter with include_in_schema=False).

`labkeeper.web.views.install` includes every module of this package, so adding a page area is
adding a module here, its templates under `templates/` and, if it needs them, its own
`static/css/NAME.css` and `static/js/NAME.js` (pulled in through the `head` block of base.html).
"""
