import './styles.css';
import { startApp } from './ui/app';

startApp();
