"""One module per page of the dashboard, each with its routes as module-level functions
(``ROUTES``); what they share is on ``request.app.state`` (see
:func:`km3mon.web.app.create_app`)."""
