"""One structured access-log line per request (the request id comes from django-guid)."""

import logging
import time

logger = logging.getLogger("loyalty.access")


def access_log_middleware(get_response):
    def middleware(request):
        started = time.perf_counter()
        response = get_response(request)
        match = getattr(request, "resolver_match", None)
        logger.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "route": match.route if match else None,
                "status": response.status_code,
                "durationMs": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return response

    return middleware
