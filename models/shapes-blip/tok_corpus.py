"""Inline English text for training the WordPiece vocabulary (with the shapes captions).

Varied everyday sentences (digits, punctuation, accented Latin letters, a few CJK
characters) so that words outside the shapes captions split into known pieces
instead of becoming [UNK].  Written for this repository; no external data.
"""

TEXT = """
A cat is sleeping on the sofa next to a small brown dog.
Two people are walking along the beach at sunset.
The quick brown fox jumps over the lazy dog.
A man rides a bicycle down a busy city street.
There are 3 apples, 12 oranges and 7 bananas in the bowl.
She bought a new laptop for $1,299.99 last Tuesday.
The train leaves at 10:45 and arrives at 14:30.
Call me at 555-0199 or write to hello@example.com.
Room 404 is on the fourth floor of building B.
My grandmother was born in 1938 in a small village.
A red car is parked in front of a white house.
The children are playing football in the park.
A bowl of soup with bread on a wooden table.
An old church with a tall tower and a clock.
Snow covers the mountains in the distance.
A green field with cows grazing under a blue sky.
A plate of pasta with tomatoes, cheese and basil.
The airplane is flying above the clouds.
A group of friends having dinner at a restaurant.
A woman reading a book in a quiet library.
A black and white photo of a busy harbour.
A close-up picture of a yellow flower with a bee.
The kitchen has a fridge, an oven and a sink.
A boy holding a kite on a windy hill.
Boats are floating on the calm lake at dawn.
A giraffe standing next to a tree at the zoo.
An elephant walking through tall grass.
A horse running across a dusty field.
A bird sitting on a branch in the rain.
A computer screen showing a spreadsheet and a chart.
Traffic lights at a crowded intersection at night.
A bus stops near the train station.
A person skiing down a snowy slope.
A surfer riding a large wave in the ocean.
A baseball player swinging a bat.
Two zebras drinking water from a river.
A teddy bear sitting on a bed with pillows.
A pizza with mushrooms, olives and peppers.
A cup of coffee and a croissant at the café.
The naïve artist painted a façade in Zürich.
Crème brûlée is a dessert from France; piñata comes from Mexico.
São Paulo, Kraków, Málaga and Reykjavík are cities.
Résumé, déjà vu, jalapeño and smörgåsbord are borrowed words.
The word for cat in Chinese is 猫 and dog is 狗.
Tokyo is 東京 and mountain is 山; water is 水.
A sign says 日本 and another says 中国.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 20 50 100 1000.
First, second, third, fourth, fifth, sixth, seventh, eighth, ninth, tenth.
Monday, Tuesday, Wednesday, Thursday, Friday, Saturday and Sunday.
January, February, March, April, May, June, July, August, September, October, November, December.
What time is it? It's half past nine!
Don't worry, we'll be there in about 20 minutes.
"Hello," she said, "how are you today?"
The temperature dropped to -5 degrees (very cold).
Please turn left at the second corner; then go straight.
The sun rises in the east and sets in the west.
Water boils at 100 degrees Celsius at sea level.
A triangle has three sides and a square has four.
A pentagon has five sides, a hexagon six and an octagon eight.
Circles, ovals, rectangles, diamonds and hearts are shapes too.
The flag is white with a red cross in the middle.
A star shines brightly in the night sky.
Pink, brown, black, white, grey, gray, cyan, magenta and violet are colours.
Light blue, dark green, bright red and pale yellow paint.
A sketch, a painting, a rendering and a diagram of a house.
An illustration of a robot waving its hand.
A cartoon drawing of a smiling sun.
A blurry snapshot taken with an old camera.
A screenshot of a web page with a search box.
This is a picture of my family on holiday.
Here is an image of a dog catching a frisbee.
The photograph shows a bridge over a river.
A logo made of simple geometric shapes.
The background is plain and the object is centred.
A texture of wood, stone, metal, glass and fabric.
Small, medium, large, tiny, huge, big and little things.
Left, right, top, bottom, above, below, inside and outside.
He runs quickly, she walks slowly, they are waiting patiently.
I think, therefore I am.
To be or not to be, that is the question.
Machine learning models classify images into categories.
The model predicts a label for every photo in the dataset.
Zero-shot classification uses text prompts for each class.
The board has an ARM processor and 4 GB of memory.
Compile the code, run the tests and check the results.
Open the door, close the window and turn off the lights.
A shop sells shoes, shirts, hats, bags and umbrellas.
A doctor, a teacher, a farmer, a pilot and a chef.
The weather is sunny today but it may rain tomorrow.
An apple a day keeps the doctor away.
Every cloud has a silver lining.
Practice makes perfect.
The museum is open from 9 am to 5 pm except on holidays.
A laptop, a phone, a keyboard, a mouse and a monitor on a desk.
Vegetables: carrots, potatoes, onions, cabbage, lettuce and beans.
Fruits: grapes, lemons, cherries, strawberries, peaches and pears.
Animals: lions, tigers, bears, wolves, foxes, rabbits, sheep and goats.
A sandwich cut in half on a blue plate.
A vase of tulips on the windowsill.
Two cats looking out of the window.
A dog wearing a red collar runs on the grass.
A street market full of people and stalls.
A lighthouse on a rocky coast under stormy clouds.
"""

_SUBJECTS = ["a dog", "a cat", "the man", "the woman", "a child", "my friend", "the teacher",
             "a bird", "the driver", "an artist", "a student", "the farmer"]
_VERBS = ["looks at", "draws", "paints", "holds", "finds", "buys", "photographs", "likes",
          "carries", "sees"]
_OBJECTS = ["a ball", "a box", "a book", "a flower", "a car", "a house", "a tree", "a cup",
            "a chair", "a lamp", "a window", "a boat", "a kite", "a clock", "a map"]
_PLACES = ["in the garden", "at home", "on the street", "near the river", "in the city",
           "at school", "on the table", "in the morning", "at night", "in winter"]


def lines():
    """The inline text plus ~240 generated sentences (deterministic)."""
    out = [l.strip() for l in TEXT.strip().splitlines() if l.strip()]
    k = 0
    for i, s in enumerate(_SUBJECTS):
        for j, v in enumerate(_VERBS):
            for m in range(2):
                o = _OBJECTS[(i * 3 + j * 5 + m * 7) % len(_OBJECTS)]
                p = _PLACES[(i + j + m * 3) % len(_PLACES)]
                out.append(f"{s} {v} {o} {p}." if k % 2 else f"{s.capitalize()} {v} {o} {p}.")
                k += 1
    return out
