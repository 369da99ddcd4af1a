"""The built-in words /describe compares a picture with: art styles, media, moods, materials, light.

Our own list, a few hundred short phrases of the kind people add to VQGAN+CLIP prompts (each is
something CLIP has seen written under pictures), grouped so that an answer can say what kind of
phrase matched. The write-up's own styles and materials (DESIGN.md, section 1) are among them.
A guild's style presets are compared beside these (jobspec.describe.candidates).
"""

from __future__ import annotations

ART_STYLES = (
    "impressionism", "expressionism", "cubism", "surrealism", "art nouveau", "art deco", "baroque",
    "rococo", "romanticism", "realism", "hyperrealism", "photorealism", "pop art", "minimalism",
    "abstract art", "abstract expressionism", "futurism", "constructivism", "bauhaus", "dadaism",
    "pointillism", "fauvism", "symbolism", "ukiyo-e", "renaissance painting", "gothic art",
    "byzantine icon", "folk art", "naive art", "outsider art", "street art", "graffiti",
    "psychedelic art", "vaporwave", "synthwave", "cyberpunk", "steampunk", "dieselpunk", "solarpunk",
    "afrofuturism", "art brut", "op art", "de stijl", "pre-raphaelite painting", "hudson river school",
    "dutch golden age painting", "chinese ink painting", "japanese woodblock print", "persian miniature",
    "aboriginal dot painting", "celtic knotwork", "islamic geometric pattern", "mexican muralism",
    "soviet propaganda poster", "victorian illustration", "medieval manuscript illumination",
    "fantasy art", "science fiction art", "concept art", "matte painting", "storybook illustration",
    "children's book illustration", "comic book art", "manga", "anime", "cartoon", "caricature",
    "disney style", "Studio Ghibli style", "pixar style", "low poly", "pixelart", "voxel art",
    "isometric art", "cel shading", "flat design", "vector art", "line art", "glitch art",
    "fractal art", "generative art", "kitsch", "lowbrow art", "tattoo art", "album cover art",
    "movie poster", "propaganda poster", "travel poster", "botanical illustration",
    "scientific illustration", "architectural drawing", "technical drawing", "blueprint",
)

PAINTERS = (
    "painting by Hokusai", "sketch by Leonardo Da Vinci", "painting by Vincent van Gogh",
    "painting by Claude Monet", "painting by Rembrandt", "painting by Johannes Vermeer",
    "painting by Salvador Dali", "painting by Pablo Picasso", "painting by Gustav Klimt",
    "painting by Edvard Munch", "painting by Caspar David Friedrich", "painting by J. M. W. Turner",
    "painting by Hieronymus Bosch", "painting by Frida Kahlo", "painting by Wassily Kandinsky",
    "painting by Piet Mondrian", "painting by Georgia O'Keeffe", "painting by Edward Hopper",
    "painting by René Magritte", "painting by Alphonse Mucha", "painting by Zdzisław Beksiński",
    "painting by Ivan Aivazovsky", "painting by John Singer Sargent", "painting by Andy Warhol",
)

MEDIA = (
    "oil painting", "acrylic painting", "watercolour", "watercolor painting", "gouache", "tempera",
    "fresco", "encaustic painting", "ink drawing", "pen and ink", "pencil sketch", "charcoal drawing",
    "pastel drawing", "chalk art", "crayon drawing", "colored pencil drawing", "marker drawing",
    "ballpoint pen drawing", "airbrush painting", "spray paint", "linocut", "woodcut", "etching",
    "engraving", "lithograph", "screen print", "risograph", "collage", "paper cut-out", "origami",
    "papercraft", "stained glass", "mosaic", "tapestry", "embroidery", "cross-stitch", "quilt",
    "needle felting", "claymation", "clay sculpture", "marble sculpture", "bronze statue",
    "wood carving", "ceramic", "porcelain figurine", "pottery", "glass sculpture", "ice sculpture",
    "sand sculpture", "lego", "diorama", "miniature model", "photograph", "film photograph",
    "polaroid", "black and white photograph", "sepia photograph", "daguerreotype", "cyanotype",
    "long exposure photograph", "macro photograph", "aerial photograph", "satellite image",
    "infrared photograph", "x-ray", "microscope image", "security camera footage", "screenshot",
    "video game screenshot", "3D render", "8K 3D", "unreal engine", "octane render", "blender render",
    "ray tracing", "digital painting", "digital art", "vector illustration", "CGI", "wireframe",
    "hologram", "neon sign", "chalkboard drawing", "whiteboard sketch", "napkin doodle",
    "sticky note doodle", "tattoo", "henna", "graffiti mural", "sidewalk chalk art", "comic strip",
    "storyboard", "infographic", "map", "emoji", "icon", "logo", "sticker", "trading card",
    "playing card", "postage stamp", "banknote engraving", "book cover", "magazine cover",
)

MOODS = (
    "serene", "peaceful", "calm", "tranquil", "melancholic", "nostalgic", "wistful", "lonely",
    "gloomy", "dark", "ominous", "eerie", "creepy", "haunting", "sinister", "horror", "dreamy",
    "dreamlike", "whimsical", "playful", "cheerful", "joyful", "cozy", "romantic", "mysterious",
    "magical", "enchanted", "epic", "majestic", "dramatic", "heroic", "chaotic", "surreal",
    "uncanny", "psychedelic", "trippy", "futuristic", "retro", "vintage", "antique", "ancient",
    "apocalyptic", "post-apocalyptic", "dystopian", "utopian", "ethereal", "heavenly", "infernal",
    "sacred", "spiritual", "meditative", "energetic", "violent", "tense", "sad", "angry", "hopeful",
    "innocent", "elegant", "luxurious", "minimal", "cluttered", "cute", "kawaii", "grotesque",
    "absurd", "humorous", "melodramatic", "cinematic", "gritty", "lush", "desolate", "barren",
)

MATERIALS = (
    "algae", "crystalline matter", "gold", "jellies and peanuts", "spectral matter", "wood",
    "moon sand", "chocolate", "candy", "ice", "fire", "smoke", "water", "glass", "crystal",
    "diamond", "silver", "copper", "bronze", "brass", "rusted iron", "chrome", "steel", "marble",
    "granite", "obsidian", "jade", "amber", "pearl", "porcelain", "clay", "sand", "stone", "moss",
    "leaves", "flowers", "feathers", "fur", "wool", "silk", "velvet", "leather", "paper",
    "cardboard", "plastic", "rubber", "slime", "liquid metal", "mercury", "lava", "magma",
    "clouds", "fog", "snow", "bubbles", "soap bubbles", "balloons", "neon lights", "circuit boards",
    "machinery", "gears", "bones", "coral", "seashells", "fungi", "mushrooms", "honey", "cheese",
    "bread", "fruit", "vegetables", "sugar", "cotton candy", "yarn", "string", "lace", "origami paper",
)

LIGHT_AND_COLOUR = (
    "golden hour", "blue hour", "sunset", "sunrise", "moonlight", "candlelight", "firelight",
    "neon lighting", "studio lighting", "soft lighting", "harsh lighting", "backlit", "rim lighting",
    "volumetric lighting", "god rays", "dramatic lighting", "chiaroscuro", "low key lighting",
    "high key lighting", "bioluminescent", "glowing", "iridescent", "holographic", "pastel colours",
    "vibrant colours", "muted colours", "monochrome", "black-and-white", "sepia", "duotone",
    "rainbow", "colourful", "neon colours", "earth tones", "warm colours", "cool colours",
    "high contrast", "low contrast", "overexposed", "underexposed", "lens flare", "bokeh",
    "tilt shift", "fisheye lens", "wide angle", "telephoto", "shallow depth of field",
    "motion blur", "film grain", "vignette", "double exposure", "silhouette", "reflections",
)

QUALITY = (
    "trending on artstation", "ArtStation HD", "Behance HD", "award winning", "masterpiece",
    "highly detailed", "intricate", "sharp focus", "4K", "8K", "HDR", "photorealistic",
    "blurry", "low resolution", "jpeg artifacts", "sketchy", "unfinished", "rough sketch",
    "nature-lover", "deviantart", "pinterest", "instagram photo", "national geographic photo",
    "stock photo", "product photo", "fashion photography", "portrait photography",
    "street photography", "landscape photography", "wildlife photography", "food photography",
    "architectural photography", "astrophotography", "underwater photography",
)

VOCABULARY: dict[str, tuple[str, ...]] = {
    "art style": ART_STYLES,
    "artist": PAINTERS,
    "medium": MEDIA,
    "mood": MOODS,
    "material": MATERIALS,
    "light and colour": LIGHT_AND_COLOUR,
    "look": QUALITY,
}


def vocabulary_phrases() -> tuple[str, ...]:
    """Every built-in phrase once (the first group a phrase appears in keeps it), in a fixed order."""
    seen: dict[str, None] = {}
    for phrases in VOCABULARY.values():
        for phrase in phrases:
            seen.setdefault(phrase, None)
    return tuple(seen)
