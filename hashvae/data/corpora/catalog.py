"""The corpora text-hashing papers report on: their published files,
addresses, checksums and sizes.

Checksums: sha256 where a copy was at hand to compute it (20 Newsgroups,
the AG News test file) or scikit-learn records one (20 Newsgroups, RCV1);
otherwise the MD5 that torchtext verifies its downloads against (the AG
News training file, DBpedia, Yahoo Answers). NYT (the LDC New York Times
Annotated Corpus) is licensed, has no public address or checksum, and
cannot be built without one.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from hashvae.data.corpora import readers
from hashvae.data.corpora.sources import Checksum, SourceFile

AG_CLASSES = ("World", "Sports", "Business", "Sci/Tech")
DBPEDIA_CLASSES = ("Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder",
                   "MeanOfTransportation", "Building", "NaturalPlace", "Village", "Animal",
                   "Plant", "Album", "Film", "WrittenWork")
YAHOO_CLASSES = ("Society & Culture", "Science & Mathematics", "Health",
                 "Education & Reference", "Computers & Internet", "Sports",
                 "Business & Finance", "Entertainment & Music", "Family & Relationships",
                 "Politics & Government")

TORCHTEXT = "the MD5 torchtext verifies its download against"
CHARCNN = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/"
DRIVE = "https://drive.google.com/uc?export=download&id="
LYRL = "https://ndownloader.figshare.com/files/"
SKLEARN = "the sha256 scikit-learn's fetch_rcv1 verifies"


@dataclasses.dataclass(frozen=True)
class Corpus:
  """A published corpus: its files, how they are read, and the sizes of
  its published splits (checked after reading: a copy cut short at a row
  boundary still reads as CSV)."""

  name: str
  title: str
  files: tuple[SourceFile, ...]
  read: Callable  # (corpus name, {file name: path}) -> Documents or Vectors
  published: Optional[tuple[int, int]]  # (train, test) items; None: not checked
  multilabel: bool


def _csv_pair(fields, classes):
  return lambda name, paths: readers.csv_files(name, paths, fields, classes)


def _csv_tar(file, fields, classes):
  return lambda name, paths: readers.csv_tar(name, paths[file], fields, classes)


def _newsgroups(name, paths):
  return readers.newsgroups_tar(name, paths["20news-bydate.tar.gz"])


RCV1_TRAIN = ("lyrl2004_vectors_train.dat.gz",)
RCV1_TEST = tuple(f"lyrl2004_vectors_test_pt{i}.dat.gz" for i in range(4))


def _rcv1(name, paths):
  return readers.rcv1_vectors(name, [paths[f] for f in RCV1_TRAIN],
                              [paths[f] for f in RCV1_TEST], paths["rcv1v2.topics.qrels.gz"])


def _refuse(name, paths):  # unreachable: verify() refuses a file with no checksum first
  raise AssertionError(f"{name}: no reader")


def _lyrl(name: str, figshare: str, sha256: str) -> SourceFile:
  return SourceFile(name, LYRL + figshare, (Checksum("sha256", sha256, SKLEARN),))


CORPORA: dict[str, Corpus] = {c.name: c for c in (
    Corpus("20news", "20 Newsgroups (bydate)",
           (SourceFile("20news-bydate.tar.gz",
                       "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz",
                       (Checksum("sha256", "8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e"
                                 "15c759fa66d95610", "the release, as scikit-learn's "
                                 "fetch_20newsgroups verifies it"),
                        Checksum("sha256", "a508a6b96f130a292b38957e24bafec7aac129a8c7db9c99"
                                 "b53e59d65cc1ec92", "this project's shared copy (the same "
                                 "posts re-packed under 20ng/)"))),),
           _newsgroups, (11314, 7532), False),
    Corpus("agnews", "AG News (Zhang et al. 2015 CSV release)",
           (SourceFile("train.csv", CHARCNN + "train.csv",
                       (Checksum("md5", "b1a00f826fdfbd249f79597b59e1dc12", TORCHTEXT),)),
            SourceFile("test.csv", CHARCNN + "test.csv",
                       (Checksum("sha256", "521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb"
                                 "2c40d548c3c85699", "the release (its MD5 is torchtext's "
                                 "d52ea96a97a2d943681189a97654912d)"),))),
           _csv_pair(3, AG_CLASSES), (120000, 7600), False),
    Corpus("dbpedia", "DBpedia-14 (Zhang et al. 2015 CSV release)",
           (SourceFile("dbpedia_csv.tar.gz", DRIVE + "0Bz8a_Dbh9QhbQ2Vic1kxMmZZQ1k",
                       (Checksum("md5", "dca7b1ae12b1091090db52aa7ec5ca64", TORCHTEXT),)),),
           _csv_tar("dbpedia_csv.tar.gz", 3, DBPEDIA_CLASSES), (560000, 70000), False),
    Corpus("yahoo", "Yahoo! Answers (Zhang et al. 2015 CSV release)",
           (SourceFile("yahoo_answers_csv.tar.gz", DRIVE + "0Bz8a_Dbh9Qhbd2JNdDBsQUdocVU",
                       (Checksum("md5", "f3f9899b997a42beb24157e62e3eea8d", TORCHTEXT),)),),
           _csv_tar("yahoo_answers_csv.tar.gz", 4, YAHOO_CLASSES), (1400000, 60000), False),
    Corpus("rcv1", "RCV1-v2 (LYRL2004 tf-idf vectors, 103 topics)",
           (_lyrl("lyrl2004_vectors_train.dat.gz", "5976057",
                  "5468f656d0ba7a83afc7ad44841cf9a53048a5c083eedc005dcdb5cc768924ae"),
            _lyrl("lyrl2004_vectors_test_pt0.dat.gz", "5976069",
                  "ed40f7e418d10484091b059703eeb95ae3199fe042891dcec4be6696b9968374"),
            _lyrl("lyrl2004_vectors_test_pt1.dat.gz", "5976066",
                  "87700668ae45d45d5ca1ef6ae9bd81ab0f5ec88cc95dcef9ae7838f727a13aa6"),
            _lyrl("lyrl2004_vectors_test_pt2.dat.gz", "5976063",
                  "48143ac703cbe33299f7ae9f4995db49a258690f60e5debbff8995c34841c7f5"),
            _lyrl("lyrl2004_vectors_test_pt3.dat.gz", "5976060",
                  "dfcb0d658311481523c6e6ca0c3f5a3e1d3d12cde5d7a8ce629a9006ec7dbb39"),
            _lyrl("rcv1v2.topics.qrels.gz", "5976048",
                  "2a98e5e5d8b770bded93afc8930d88299474317fe14181aee1466cc754d0d1c1")),
           _rcv1, (23149, 781265), True),
    Corpus("nyt", "New York Times Annotated Corpus (LDC2008T19; licensed)",
           (SourceFile("nyt_corpus_LDC2008T19.tgz", "https://catalog.ldc.upenn.edu/LDC2008T19",
                       ()),),
           _refuse, None, True),
)}
