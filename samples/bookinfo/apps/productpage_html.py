"""productpage's HTML: the index and the product page, shaped like upstream's templates.

Stars render as upstream's Bootstrap template did (`<font color="black">` around
`glyphicon-star` spans), which is what people and scripts grep for; the error texts are upstream's.
"""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = "/static/bookinfo.css"


def _page(body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1.0">\n'
        f'<title>Simple Bookstore App</title>\n<link rel="stylesheet" href="{STYLE}">\n</head>\n'
        f"<body>\n{body}</body>\n</html>\n"
    )


def index_page(services: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{escape(str(info['name']))}</td><td>{escape(str(info['endpoint']))}</td></tr>\n"
        for name, info in services.items()
    )
    return _page(
        '<div class="container">\n<h2>Hello! This is a simple bookstore application consisting of three services'
        " as shown below</h2>\n"
        f'<table class="table">\n<tr><th>service</th><th>name</th><th>endpoint</th></tr>\n{rows}</table>\n'
        "<p>Click on one of the links below to auto generate a request to the backend as a real user or a tester</p>\n"
        '<p><a href="/productpage?u=normal">Normal user</a></p>\n'
        '<p><a href="/productpage?u=test">Test user</a></p>\n</div>\n'
    )


def _nav(user: str) -> str:
    if user:
        return (
            f'<nav class="navbar"><a class="brand" href="#">BookInfo Sample</a>'
            f'<span class="user">{escape(user)}</span> <a href="logout">sign out</a></nav>\n'
        )
    return (
        '<nav class="navbar"><a class="brand" href="#">BookInfo Sample</a>\n'
        '<form method="post" action="login" name="login_form">\n'
        '<input type="text" id="username" name="username" placeholder="Username" required>\n'
        '<input type="password" id="password" name="passwd" placeholder="Password">\n'
        '<button type="submit" id="sign-in-button">Sign in</button>\n</form></nav>\n'
    )


def _rating(rating: Any) -> str:
    if not isinstance(rating, dict):
        return ""
    stars = rating.get("stars")
    if isinstance(stars, int) and stars:
        full = '<span class="glyphicon glyphicon-star">&#9733;</span>\n' * max(0, min(stars, 5))
        empty = '<span class="glyphicon glyphicon-star-empty">&#9734;</span>\n' * max(0, 5 - stars)
        return f'<font color="{escape(str(rating.get("color", "black")))}">\n{full}{empty}</font>\n'
    if rating.get("error"):
        return f"<p><i>{escape(str(rating['error']))}</i></p>\n"
    return ""


def _details(status: int, details: dict[str, Any]) -> str:
    if status != 200:
        return (
            '<h4 class="text-center text-primary">Error fetching product details!</h4>\n'
            f"<p>{escape(str(details.get('error', '')))}</p>\n"
        )
    rows = [
        ("Type", details.get("type")),
        ("Pages", details.get("pages")),
        ("Publisher", details.get("publisher")),
        ("Language", details.get("language")),
        ("ISBN-10", details.get("ISBN-10")),
        ("ISBN-13", details.get("ISBN-13")),
    ]
    items = "".join(f"<dt>{label}:</dt><dd>{escape(str(value))}</dd>\n" for label, value in rows)
    return f'<h4 class="text-center text-primary">Book Details</h4>\n<dl>\n{items}</dl>\n'


def _reviews(status: int, reviews: dict[str, Any]) -> str:
    if status != 200:
        return (
            '<h4 class="text-center text-primary">Error fetching product reviews!</h4>\n'
            f"<p>{escape(str(reviews.get('error', '')))}</p>\n"
        )
    parts = ['<h4 class="text-center text-primary">Book Reviews</h4>\n']
    for review in reviews.get("reviews") or ():
        if not isinstance(review, dict):
            continue
        parts.append(
            "<blockquote>\n"
            f"<p>{escape(str(review.get('text', '')))}</p>\n"
            f"<small>{escape(str(review.get('reviewer', '')))}</small>\n"
            f"{_rating(review.get('rating'))}"
            "</blockquote>\n"
        )
    served_by = escape(str(reviews.get("podname", "")))
    cluster = reviews.get("clustername")
    if cluster and cluster != "null":
        served_by += f" on cluster {escape(str(cluster))}"
    parts.append(f"<dl><dt>Reviews served by:</dt><dd><u>{served_by}</u></dd></dl>\n")
    return "".join(parts)


def product_page(
    user: str,
    product: dict[str, Any],
    details_status: int,
    details: dict[str, Any],
    reviews_status: int,
    reviews: dict[str, Any],
) -> str:
    return _page(
        _nav(user)
        + '<div class="container">\n'
        + f'<h1 class="text-center text-primary">{escape(str(product["title"]))}</h1>\n'
        + f"<p>{product['descriptionHtml']}</p>\n"  # upstream renders it unescaped (it is our own HTML)
        + f'<div class="details">\n{_details(details_status, details)}</div>\n'
        + f'<div class="reviews">\n{_reviews(reviews_status, reviews)}</div>\n'
        + "</div>\n"
    )
